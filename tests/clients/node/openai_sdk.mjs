// The openai Node SDK: node openai_sdk.mjs chat|responses BASE_URL MODELS json|stream MESSAGES
// Prints, per model, {model, text, usage: {prompt_tokens, completion_tokens}, headers} or
// {model, error: {status, code, message}}.
import { adaptiveHeaders, eachModel, load, parseArgs } from "./load.mjs";

const { default: OpenAI } = await load("openai");
const api = process.argv[2];
const { baseURL, models, stream, messages } = parseArgs(process.argv.slice(3));
const client = new OpenAI({ baseURL, apiKey: "x", maxRetries: 0 });

async function chat(model) {
  const request = { model, messages, ...(stream ? { stream, stream_options: { include_usage: true } } : {}) };
  const { data, response } = await client.chat.completions.create(request).withResponse();
  if (!stream) {
    const usage = data.usage;
    return { text: data.choices[0].message.content, usage, headers: adaptiveHeaders(response.headers) };
  }
  let text = "";
  let usage = null;
  for await (const chunk of data) {
    for (const choice of chunk.choices) text += choice.delta?.content ?? "";
    if (chunk.usage) usage = chunk.usage;
  }
  return { text, usage, headers: adaptiveHeaders(response.headers) };
}

async function responses(model) {
  const input = messages.map((m) => ({ role: m.role, content: m.content }));
  const { data, response } = await client.responses.create({ model, input, stream }).withResponse();
  let done = data;
  let text = "";
  if (stream) {
    for await (const event of data) {
      if (event.type === "response.output_text.delta") text += event.delta;
      if (event.type === "response.completed") done = event.response;
    }
    if (text !== done.output_text && text !== outputText(done)) throw new Error("deltas ≠ output");
  } else {
    text = data.output_text;
  }
  const usage = { prompt_tokens: done.usage.input_tokens, completion_tokens: done.usage.output_tokens };
  return { text, usage, headers: adaptiveHeaders(response.headers) };
}

// A streamed response object has no output_text convenience field: join its output text parts.
function outputText(response) {
  return response.output
    .flatMap((item) => (item.type === "message" ? item.content : []))
    .filter((part) => part.type === "output_text")
    .map((part) => part.text)
    .join("");
}

await eachModel(models, api === "chat" ? chat : responses, (error) =>
  error instanceof OpenAI.APIError
    ? { status: error.status, code: error.code ?? null, message: error.message }
    : null,
);
