// The Vercel AI SDK: node vercel_ai.mjs chat|auto BASE_URL MODELS json|stream MESSAGES
// `chat`: the provider's .chat(model) (chat completions); `auto`: its default provider
// openai(model), which calls the Responses API. Prints, per model, {model, text, usage,
// headers} or {model, error: {status, code, message}}.
import { adaptiveHeaders, eachModel, load, parseArgs } from "./load.mjs";

const { generateText, streamText, APICallError } = await load("ai");
const { createOpenAI } = await load("@ai-sdk/openai");
const kind = process.argv[2];
const { baseURL, models, stream, messages } = parseArgs(process.argv.slice(3));
const provider = createOpenAI({ baseURL, apiKey: "x" });

function headersOf(response) {
  return adaptiveHeaders(new Headers(response.headers ?? {}));
}

async function run(model) {
  const languageModel = kind === "chat" ? provider.chat(model) : provider(model);
  if (!stream) {
    const result = await generateText({ model: languageModel, messages, maxRetries: 0 });
    const usage = { prompt_tokens: result.usage.inputTokens, completion_tokens: result.usage.outputTokens };
    return { text: result.text, usage, headers: headersOf(result.response) };
  }
  let failure = null;
  const result = streamText({
    model: languageModel,
    messages,
    maxRetries: 0,
    onError: ({ error }) => {
      failure = error;
    },
  });
  let text = "";
  for await (const piece of result.textStream) text += piece;
  if (failure) throw failure;
  const usage = await result.usage;
  const response = await result.response;
  return {
    text,
    usage: { prompt_tokens: usage.inputTokens, completion_tokens: usage.outputTokens },
    headers: headersOf(response),
  };
}

function errorCode(body) {
  try {
    return JSON.parse(body ?? "{}").error?.code ?? null;
  } catch {
    return null;
  }
}

await eachModel(models, run, (error) =>
  APICallError.isInstance(error)
    ? { status: error.statusCode, code: errorCode(error.responseBody), message: error.message }
    : null,
);
