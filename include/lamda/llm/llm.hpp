// lamda/llm/llm.hpp: the LLM generator, everything -- a Proposer that asks a language model for
// candidates over the OpenAI-compatible chat-completions protocol (OpenAI, Ollama, vLLM,
// llama.cpp's server, LM Studio), feeds the loop's verdicts back to it, and repairs what it gets
// wrong:
//
//   lamda::LlmConfig config;                       // base_url, model, temperature, ...
//   config.base_url = "http://127.0.0.1:8080/v1";
//   config.model = "qwen2.5-coder-7b";
//   config.api_key = lamda::llm_api_key_from_env(); // LAMDA_API_KEY or OPENAI_API_KEY
//   lamda::LlmProposer proposer(config);
//   lamda::run_generation(task, proposer, setup);   // search/loop.hpp
//
// The parts, each a header that compiles alone:
//   llm/client.hpp    HTTP: retries, a total deadline per request, caps, SSE streaming, server probing
//   llm/reply.hpp     the models in a reply; reasoning (<think>, reasoning_content); why a reply held none
//   llm/repair.hpp    mechanical fixes of near-miss DSL (non-ASCII, kernel=(3,3), NCHW shapes, in=, ...)
//   llm/prompt.hpp    the system prompt (full and compact), the device summary
//   llm/proposer.hpp  LlmProposer: turns, history within the context window, batched repairs
//
// Compiled only with LAMDA_WITH_LLM defined (the build defines it when cpp-httplib is found,
// next to the latency model); needs simdjson and cpp-httplib (link -lcpp-httplib on Debian).
#ifndef LAMDA_LLM_LLM_HPP
#define LAMDA_LLM_LLM_HPP

#if !defined(LAMDA_WITH_LLM)
#error "lamda/llm/llm.hpp needs LAMDA_WITH_LLM (cpp-httplib and simdjson; CMake: link lamda::llm)"
#else

#include "grammar.hpp"
#include "client.hpp"
#include "reply.hpp"
#include "repair.hpp"
#include "prompt.hpp"
#include "proposer.hpp"

#endif  // LAMDA_WITH_LLM
#endif  // LAMDA_LLM_LLM_HPP
