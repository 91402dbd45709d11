// Our bun patch of @opentelemetry/core (patches/@opentelemetry%2Fcore@3.1.0.patch; why:
// docs/observability.md, "Overhead") keeps what the unpatched code did: attribute checks still refuse
// what they refused (circular values, functions, bigints), keep own keys only and drop undefined. The
// first test fails when an upgrade drops the patch without anyone noticing.
import { describe, expect, test } from "bun:test";
import { dirname, join } from "node:path";
import { cleanAttributes, isAnyValue } from "@opentelemetry/core";

const LIMITS = { attributeCountLimit: 128, attributeValueLengthLimit: Infinity };

describe("the @opentelemetry/core patch", () => {
  test("is applied", async () => {
    // Bun's Function#toString drops comments: the installed files are read instead.
    const dist = dirname(Bun.resolveSync("@opentelemetry/core", import.meta.dir));
    for (const ext of ["mjs", "cjs"]) expect(await Bun.file(join(dist, `common/attributes.${ext}`)).text(), ext).toContain("agent-prod patch");
  });

  test("attribute values: primitives, arrays and plain objects pass; circular, functions, bigints do not", () => {
    for (const ok of ["s", "", 0, 1.5, true, null, [1, "a"], { a: { b: [1] } }, new Uint8Array([1])]) expect(isAnyValue(ok), String(ok)).toBe(true);
    const circular: Record<string, unknown> = { a: 1 };
    circular.self = circular;
    const loop: unknown[] = [];
    loop.push(loop);
    for (const bad of [undefined, () => 1, 1n, Symbol("x"), circular, loop, new Date()]) expect(isAnyValue(bad), String(typeof bad)).toBe(false);
  });

  test("cleanAttributes keeps own keys, drops undefined and invalid values, counts what it dropped", () => {
    const proto = { inherited: "no" };
    const attrs = Object.assign(Object.create(proto), { a: "x", b: 2, c: undefined, d: () => 1, e: ["k"] });
    expect(cleanAttributes(attrs, LIMITS)).toEqual({ attributes: { a: "x", b: 2, e: ["k"] }, droppedAttributesCount: 1 });
    expect(cleanAttributes({ a: 1, b: 2, c: 3 }, { ...LIMITS, attributeCountLimit: 2 })).toEqual({ attributes: { a: 1, b: 2 }, droppedAttributesCount: 1 });
  });
});
