// The HTTP API moved to lib/http/ (../shared LAYOUT.md); this re-export keeps imports written before
// the move working while other branches land. New code imports lib/http/app.ts.
export { createApp, type AppDeps } from "./http/app.ts";
