// tests/llm/llama/server.mjs: llama.cpp (node-llama-cpp 3.21.1, CPU) behind a loopback
// OpenAI-compatible API shaped like llama.cpp's own llama-server, for the llm_llama test.
//
//   node server.mjs --model M.gguf [--ctx 2048] [--port 0] [--threads 1] [--log FILE.jsonl]
//
// Prints `listening PORT` on stdout once the model is loaded, then serves on 127.0.0.1 only:
//   GET  /health                 {"status":"ok"}
//   GET  /props                  {"default_generation_settings":{"n_ctx":N,...},"model_path":...}
//   GET  /v1/models              {"object":"list","data":[{"id":...}]}
//   POST /v1/chat/completions    messages, max_tokens (or n_predict), temperature, top_p, seed,
//                                stream (SSE, with stream_options.include_usage), grammar (GBNF, as
//                                llama-server takes it), response_format {type: json_schema|
//                                json_object}. Usage counts come from the model's own tokenizer.
// A prompt of n_ctx tokens or more gets llama-server's HTTP 400:
//   {"error":{"code":400,"message":"request (N tokens) exceeds the available context size (M tokens),
//    try increasing it","type":"exceed_context_size_error","n_prompt_tokens":N,"n_ctx":M}}
// and a reply never runs past the window (max_tokens is cut to n_ctx - prompt tokens, as
// llama-server does without context shift). A grammar that does not compile gets HTTP 400.
// Requests are served one at a time (one slot). With --log, one JSON line per request:
//   {"n_ctx","prompt_tokens","requested_max_tokens" (null when not given),"max_tokens" (what was
//    used: at most n_ctx - prompt_tokens),"status","finish_reason","completion_tokens","stream",
//    "constraint":"grammar"|"json_schema"|"none","content"}; a refused one has "error":
//   "exceed_context_size" or "grammar: ...".
// The prompt is the messages in a plain template ("<|system|>\n...\n<|user|>\n...\n<|assistant|>\n");
// the test model has no chat template of its own.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import {getLlama, LlamaCompletion} from "node-llama-cpp";

function parseArgs(argv) {
    const a = {model: "", ctx: 2048, port: 0, threads: 1, log: ""};
    for (let i = 2; i < argv.length; i++) {
        const k = argv[i], v = argv[i + 1];
        if (k === "--model") a.model = v;
        else if (k === "--ctx") a.ctx = Number(v);
        else if (k === "--port") a.port = Number(v);
        else if (k === "--threads") a.threads = Number(v);
        else if (k === "--log") a.log = v;
        else {
            console.error(`server.mjs: unknown argument '${k}'`);
            process.exit(2);
        }
        i++;
    }
    if (!a.model || !(a.ctx > 0)) {
        console.error("usage: node server.mjs --model M.gguf [--ctx N] [--port P] [--threads T] [--log FILE]");
        process.exit(2);
    }
    return a;
}

const args = parseArgs(process.argv);
const llama = await getLlama({gpu: false, build: "never"});
const model = await llama.loadModel({modelPath: args.model});
const context = await model.createContext({contextSize: args.ctx, threads: args.threads, sequences: 1});
const nCtx = context.contextSize;
const alias = path.basename(args.model, ".gguf");
const sequence = context.getSequence();
let queue = Promise.resolve();  // one slot: requests run one after another

function log(entry) {
    if (args.log) fs.appendFileSync(args.log, JSON.stringify(entry) + "\n");
}

function sendJson(res, status, obj) {
    const body = JSON.stringify(obj);
    res.writeHead(status, {"Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(body)});
    res.end(body);
}

function sendError(res, status, message, type, extra = {}) {
    sendJson(res, status, {error: {code: status, message, type, ...extra}});
}

function promptOf(messages) {
    let text = "";
    for (const m of messages) {
        let content = m.content;
        if (Array.isArray(content)) content = content.map((p) => (typeof p === "string" ? p : p.text || "")).join("");
        text += `<|${m.role}|>\n${content ?? ""}\n`;
    }
    return text + "<|assistant|>\n";
}

async function grammarOf(body) {
    if (typeof body.grammar === "string" && body.grammar.length > 0)
        return {kind: "grammar", grammar: await llama.createGrammar({grammar: body.grammar})};
    const rf = body.response_format;
    if (rf && rf.type === "json_schema" && rf.json_schema && rf.json_schema.schema)
        return {kind: "json_schema", grammar: await llama.createGrammarForJsonSchema(rf.json_schema.schema)};
    if (rf && rf.type === "json_object" && rf.schema)
        return {kind: "json_schema", grammar: await llama.createGrammarForJsonSchema(rf.schema)};
    return {kind: "none", grammar: undefined};
}

async function chat(req, res, body) {
    const entry = {n_ctx: nCtx, stream: body.stream === true};
    if (!Array.isArray(body.messages) || body.messages.length === 0) {
        entry.status = 400;
        log(entry);
        return sendError(res, 400, "'messages' is required", "invalid_request_error");
    }
    // LlamaCompletion prepends <s> itself: the prompt is that and these.
    const tokens = model.tokenize(promptOf(body.messages), false);
    const promptTokens = tokens.length + (model.tokens.bos == null ? 0 : 1);
    entry.prompt_tokens = promptTokens;
    if (promptTokens >= nCtx) {
        entry.status = 400;
        entry.error = "exceed_context_size";
        log(entry);
        return sendError(res, 400,
            `request (${promptTokens} tokens) exceeds the available context size (${nCtx} tokens), try increasing it`,
            "exceed_context_size_error", {n_prompt_tokens: promptTokens, n_ctx: nCtx});
    }
    let constraint;
    try {
        constraint = await grammarOf(body);
    } catch (e) {
        entry.status = 400;
        entry.error = "grammar: " + String(e && e.message || e).slice(0, 300);
        log(entry);
        return sendError(res, 400, `failed to parse grammar: ${String(e && e.message || e).slice(0, 500)}`, "invalid_request_error");
    }
    entry.constraint = constraint.kind;
    let maxTokens = Number(body.max_tokens ?? body.max_completion_tokens ?? body.n_predict ?? -1);
    entry.requested_max_tokens = maxTokens > 0 ? maxTokens : null;  // what the client asked for
    if (!(maxTokens > 0)) maxTokens = nCtx;
    maxTokens = Math.min(maxTokens, nCtx - promptTokens);
    entry.max_tokens = maxTokens;
    const temperature = body.temperature === undefined ? 0.8 : Number(body.temperature);
    const seed = body.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(body.seed);
    const id = "chatcmpl-" + Math.random().toString(36).slice(2, 12);
    const created = Math.floor(Date.now() / 1000);
    const abort = new AbortController();
    res.on("close", () => { if (!res.writableFinished) abort.abort(); });

    const stream = body.stream === true;
    const includeUsage = stream && body.stream_options && body.stream_options.include_usage === true;
    const chunk = (delta, finish) => ({id, object: "chat.completion.chunk", created, model: alias,
        choices: [{index: 0, delta, finish_reason: finish}]});
    if (stream) {
        res.writeHead(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", Connection: "keep-alive"});
        res.write(`data: ${JSON.stringify(chunk({role: "assistant", content: ""}, null))}\n\n`);
    }
    let completionTokens = 0;
    await sequence.clearHistory();
    const completion = new LlamaCompletion({contextSequence: sequence});
    let result;
    try {
        result = await completion.generateCompletionWithMeta(tokens, {
            maxTokens, temperature, seed,
            topP: body.top_p === undefined ? undefined : Number(body.top_p),
            grammar: constraint.grammar,
            signal: abort.signal, stopOnAbortSignal: true, disableContextShift: true, contextShiftSize: 1,
            onToken: (t) => { completionTokens += t.length; },
            onTextChunk: stream ? (text) => { if (text) res.write(`data: ${JSON.stringify(chunk({content: text}, null))}\n\n`); } : undefined,
        });
    } finally {
        completion.dispose();
    }
    const finish = result.metadata.stopReason === "maxTokens" ? "length" : "stop";
    const usage = {prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens};
    Object.assign(entry, {status: 200, finish_reason: result.metadata.stopReason === "abort" ? "abort" : finish,
        completion_tokens: completionTokens, content: result.response});
    log(entry);
    if (abort.signal.aborted) return res.end();
    if (stream) {
        res.write(`data: ${JSON.stringify(chunk({}, finish))}\n\n`);
        if (includeUsage) res.write(`data: ${JSON.stringify({id, object: "chat.completion.chunk", created, model: alias, choices: [], usage})}\n\n`);
        res.write("data: [DONE]\n\n");
        return res.end();
    }
    return sendJson(res, 200, {id, object: "chat.completion", created, model: alias,
        choices: [{index: 0, message: {role: "assistant", content: result.response}, finish_reason: finish}], usage});
}

const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://127.0.0.1");
    if (req.method === "GET" && url.pathname === "/health") return sendJson(res, 200, {status: "ok"});
    if (req.method === "GET" && url.pathname === "/props")
        return sendJson(res, 200, {default_generation_settings: {n_ctx: nCtx, params: {n_predict: -1}},
            total_slots: 1, model_path: args.model, model_alias: alias});
    if (req.method === "GET" && url.pathname === "/v1/models")
        return sendJson(res, 200, {object: "list", data: [{id: alias, object: "model", owned_by: "llamacpp", meta: {n_ctx_train: model.trainContextSize}}]});
    if (req.method === "POST" && url.pathname === "/v1/chat/completions") {
        const parts = [];
        let size = 0;
        req.on("data", (d) => { size += d.length; if (size <= 16 << 20) parts.push(d); });
        req.on("end", () => {
            let body;
            try {
                body = JSON.parse(Buffer.concat(parts).toString("utf8"));
            } catch (e) {
                return sendError(res, 400, "the request body is not JSON", "invalid_request_error");
            }
            queue = queue.then(() => chat(req, res, body)).catch((e) => {
                console.error("server.mjs: " + (e && e.stack || e));
                if (!res.headersSent) sendError(res, 500, String(e && e.message || e), "server_error");
                else res.end();
            });
        });
        return undefined;
    }
    return sendError(res, 404, "File Not Found", "not_found_error");
});
server.listen(args.port, "127.0.0.1", () => {
    console.log(`listening ${server.address().port}`);
});
for (const sig of ["SIGTERM", "SIGINT"])
    process.on(sig, () => { server.close(); process.exit(0); });
