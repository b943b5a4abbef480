#!/usr/bin/env python3
"""Writes a tiny llama-architecture GGUF model with random weights for the llm_llama test.

    make_model.py OUT.gguf [--corpus FILE ...] [--vocab N] [--eos-bias X] [--seed S]

Contract
- The model is made here, at test time, from a fixed seed: nothing is downloaded. Only the
  Python standard library is used (any python3 >= 3.6).
- Architecture `llama` (what llama.cpp loads with no extra keys): n_embd 64, 2 blocks, 4 heads,
  n_ff 128, F32 tensors, context_length 4096; a file of a few MB.
- Vocabulary: SentencePiece style (`tokenizer.ggml.model = llama`): <unk>, <s>, </s>, the 256
  byte tokens <0x00>..<0xFF> (byte fallback: every string can be tokenized), the printable ASCII
  characters, U+2581 (SentencePiece's space), then the most frequent words of the corpus files
  (with and without a leading U+2581) and all their prefixes, scored by length so that llama.cpp's
  SPM merge builds whole words. On lamda's prompts this gives a real tokenizer's ~3-4 characters
  per token, so window handling is tested against realistic counts.
- Weights are random (normal, small) except one direction: every token embedding has a constant
  first component, which survives RMSNorm, and only </s> reads it in the output matrix
  (`--eos-bias`, 12 by default, roughly the logit it gets). So the end of a reply is likely
  wherever a grammar allows it (replies of one to a few layers); without a grammar the random
  model writes 1-20 tokens of vocabulary pieces and stops (with --eos-bias 6 it rarely stops
  before max_tokens).
- Exit 0 on success, 2 on a usage error (argparse).
"""
import argparse
import array
import collections
import math
import random
import re
import struct
import sys

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT = 32
# GGUF value types
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
GGML_TYPE_F32 = 0
# llama.cpp token types
TOK_NORMAL, TOK_UNKNOWN, TOK_CONTROL, TOK_BYTE = 1, 2, 3, 6
SPACE = "\u2581"


def gguf_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_value(vtype, value):
    if vtype == T_UINT32:
        return struct.pack("<I", value)
    if vtype == T_INT32:
        return struct.pack("<i", value)
    if vtype == T_FLOAT32:
        return struct.pack("<f", value)
    if vtype == T_BOOL:
        return struct.pack("<B", 1 if value else 0)
    if vtype == T_STRING:
        return gguf_string(value)
    raise ValueError("unsupported type %d" % vtype)


def gguf_kv(key, vtype, value, elem_type=None):
    out = gguf_string(key) + struct.pack("<I", vtype)
    if vtype == T_ARRAY:
        out += struct.pack("<IQ", elem_type, len(value))
        if elem_type == T_FLOAT32:
            out += struct.pack("<%df" % len(value), *value)
        elif elem_type == T_INT32:
            out += struct.pack("<%di" % len(value), *value)
        else:
            out += b"".join(gguf_value(elem_type, v) for v in value)
        return out
    return out + gguf_value(vtype, value)


def build_vocab(corpus_texts, size):
    tokens, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [TOK_UNKNOWN, TOK_CONTROL, TOK_CONTROL]
    for b in range(256):
        tokens.append("<0x%02X>" % b)
        scores.append(0.0)
        types.append(TOK_BYTE)
    seen = set()

    def add(piece, score):
        if piece in seen or len(tokens) >= size:
            return
        seen.add(piece)
        tokens.append(piece)
        scores.append(score)
        types.append(TOK_NORMAL)

    add(SPACE, 1.0)
    for c in range(0x21, 0x7F):
        add(chr(c), 1.0)
    counts = collections.Counter()
    for text in corpus_texts:
        # words as SentencePiece sees them: a space becomes U+2581 and starts the next piece
        for m in re.finditer(r" ?[A-Za-z_]+| ?[0-9]+|[^\sA-Za-z0-9_]+", text):
            counts[m.group(0).replace(" ", SPACE)] += 1
    for word, _ in counts.most_common():
        if len(word) < 2:
            continue
        for n in range(2, len(word) + 1):
            add(word[:n], float(n))
        if len(tokens) >= size:
            break
    return tokens, scores, types


def main():
    ap = argparse.ArgumentParser(description="write a tiny random llama GGUF model (llm_llama test)")
    ap.add_argument("out")
    ap.add_argument("--corpus", action="append", default=[], help="text files the vocabulary's words come from")
    ap.add_argument("--vocab", type=int, default=3000)
    ap.add_argument("--eos-bias", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()

    texts = []
    for path in a.corpus:
        with open(path, encoding="utf-8", errors="replace") as f:
            texts.append(f.read())
    tokens, scores, types = build_vocab(texts, max(a.vocab, 400))
    n_vocab = len(tokens)
    n_embd, n_layer, n_head, n_ff, n_ctx = 64, 2, 4, 128, 4096
    rng = random.Random(a.seed)

    # A tensor is (shape as rows x cols, row-major floats); ggml's ne is the reverse: a
    # [n_out, n_in] matrix has ne {n_in, n_out}.
    def rand(rows, cols=None, std=0.02):
        n = rows * (cols or 1)
        return ((rows, cols) if cols else (rows,), array.array("f", (rng.gauss(0.0, std) for _ in range(n))))

    def ones(n):
        return ((n,), array.array("f", [1.0] * n))

    tensors = []
    embd = rand(n_vocab, n_embd, std=0.1)
    for t in range(n_vocab):
        embd[1][t * n_embd] = 1.0  # the constant direction that only </s> reads
    tensors.append(("token_embd.weight", embd))
    for i in range(n_layer):
        p = "blk.%d." % i
        tensors += [
            (p + "attn_norm.weight", ones(n_embd)),
            (p + "attn_q.weight", rand(n_embd, n_embd, std=0.1)),
            (p + "attn_k.weight", rand(n_embd, n_embd, std=0.1)),
            (p + "attn_v.weight", rand(n_embd, n_embd, std=0.1)),
            (p + "attn_output.weight", rand(n_embd, n_embd, std=0.02)),
            (p + "ffn_norm.weight", ones(n_embd)),
            (p + "ffn_gate.weight", rand(n_ff, n_embd, std=0.1)),
            (p + "ffn_up.weight", rand(n_ff, n_embd, std=0.1)),
            (p + "ffn_down.weight", rand(n_embd, n_ff, std=0.02)),
        ]
    tensors.append(("output_norm.weight", ones(n_embd)))
    out = rand(n_vocab, n_embd, std=0.3)
    for t in range(n_vocab):
        out[1][t * n_embd] = 0.0
    # After RMSNorm the constant component is 1/rms of an embedding (~6): scale to --eos-bias.
    rms = math.sqrt(sum(x * x for x in embd[1]) / len(embd[1]))
    out[1][2 * n_embd] = a.eos_bias * rms
    tensors.append(("output.weight", out))

    kvs = [
        gguf_kv("general.architecture", T_STRING, "llama"),
        gguf_kv("general.name", T_STRING, "lamda-tiny-random"),
        gguf_kv("general.alignment", T_UINT32, ALIGNMENT),
        gguf_kv("llama.context_length", T_UINT32, n_ctx),
        gguf_kv("llama.embedding_length", T_UINT32, n_embd),
        gguf_kv("llama.block_count", T_UINT32, n_layer),
        gguf_kv("llama.feed_forward_length", T_UINT32, n_ff),
        gguf_kv("llama.attention.head_count", T_UINT32, n_head),
        gguf_kv("llama.attention.head_count_kv", T_UINT32, n_head),
        gguf_kv("llama.attention.layer_norm_rms_epsilon", T_FLOAT32, 1e-5),
        gguf_kv("llama.rope.dimension_count", T_UINT32, n_embd // n_head),
        gguf_kv("llama.vocab_size", T_UINT32, n_vocab),
        gguf_kv("tokenizer.ggml.model", T_STRING, "llama"),
        gguf_kv("tokenizer.ggml.tokens", T_ARRAY, tokens, T_STRING),
        gguf_kv("tokenizer.ggml.scores", T_ARRAY, scores, T_FLOAT32),
        gguf_kv("tokenizer.ggml.token_type", T_ARRAY, types, T_INT32),
        gguf_kv("tokenizer.ggml.unknown_token_id", T_UINT32, 0),
        gguf_kv("tokenizer.ggml.bos_token_id", T_UINT32, 1),
        gguf_kv("tokenizer.ggml.eos_token_id", T_UINT32, 2),
        gguf_kv("tokenizer.ggml.add_bos_token", T_BOOL, True),
        gguf_kv("tokenizer.ggml.add_eos_token", T_BOOL, False),
        gguf_kv("tokenizer.ggml.add_space_prefix", T_BOOL, False),
    ]

    def pad(n):
        return (ALIGNMENT - n % ALIGNMENT) % ALIGNMENT

    infos, blobs, offset = b"", [], 0
    for name, (shape, arr) in tensors:
        if sys.byteorder != "little":
            arr = array.array("f", arr)
            arr.byteswap()
        ne = list(reversed(shape))
        infos += gguf_string(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        infos += struct.pack("<IQ", GGML_TYPE_F32, offset)
        data = arr.tobytes()
        data += b"\0" * pad(len(data))
        blobs.append(data)
        offset += len(data)
    header = GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(tensors), len(kvs)) + b"".join(kvs) + infos
    header += b"\0" * pad(len(header))
    with open(a.out, "wb") as f:
        f.write(header)
        for b in blobs:
            f.write(b)
    print("%s: %d tokens, %d tensors, %d bytes" % (a.out, n_vocab, len(tensors), len(header) + offset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
