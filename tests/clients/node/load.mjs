// Import a pinned client from the directory .ci/run installed them into
// ($ADAPTIVE_CLIENTS_NODE_DIR/node_modules): ES modules ignore NODE_PATH, so resolve it there.
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

export async function load(name) {
  const dir = process.env.ADAPTIVE_CLIENTS_NODE_DIR;
  if (!dir) throw new Error("ADAPTIVE_CLIENTS_NODE_DIR is not set");
  const require = createRequire(dir.endsWith("/") ? dir : `${dir}/`);
  return import(pathToFileURL(require.resolve(name)).href);
}

// The headers a test asserts on: the proxy's decision and the request id.
export function adaptiveHeaders(headers) {
  const out = {};
  for (const [key, value] of headers.entries()) {
    if (key.startsWith("x-adaptive-") || key === "x-request-id") out[key] = value;
  }
  return out;
}

// argv: BASE_URL MODELS json|stream MESSAGES_JSON (after any script-specific leading args);
// MODELS is one model or several, comma-separated (one Node start-up serves them all).
export function parseArgs(argv) {
  const [baseURL, models, mode, messages] = argv;
  if (!["json", "stream"].includes(mode)) throw new Error(`mode must be json|stream: ${mode}`);
  return { baseURL, models: models.split(","), stream: mode === "stream", messages: JSON.parse(messages) };
}

// One JSON line per model: {model, text, usage, headers}, or {model, error} for an API error.
export async function eachModel(models, run, apiError) {
  for (const model of models) {
    let result;
    try {
      result = await run(model);
    } catch (error) {
      const known = apiError(error);
      if (!known) throw error;
      result = { error: known };
    }
    process.stdout.write(`${JSON.stringify({ model, ...result })}\n`);
  }
}
