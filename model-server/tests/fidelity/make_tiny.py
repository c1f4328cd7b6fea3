#!/usr/bin/env python3
"""Makes the tiny checkpoints model-server's fidelity test (tests/fidelity.rs) serves, and
sentence-transformers' own answers for them.

Each model is built by transformers from a config and a seed (random weights), wrapped in
sentence-transformers modules and saved as sentence-transformers saves a model (safetensors,
modules.json, 1_Pooling/, 2_Dense/, config_sentence_transformers.json, tokenizer files):

  bert-cls-prompts   BERT, CLS pooling, Normalize, prompts {query, passage}, max_seq_length 128
  bert-max           BERT, max pooling, no Normalize
  xlmr-mean-dense    XLM-RoBERTa, mean pooling, Dense 384->256 (Tanh), no Normalize, length 64
  bert-reranker      BertForSequenceClassification, one label (a cross-encoder), length 128
  xlmr-reranker      XLMRobertaForSequenceClassification, one label, length 96

The widths are real ones (hidden 384, intermediate 1536) so the server's packed AVX-512 and int8
kernels run as they do for all-MiniLM-L6-v2; two layers keep them small. BERT models use
all-MiniLM-L6-v2's WordPiece tokenizer (scripts/fetch-model.sh); XLM-RoBERTa ones a Unigram
tokenizer trained here on the texts and the calibration corpus, with XLM-R's special tokens.

Each model directory gets reference.json: the texts, their token counts, and the embeddings
(for each prompt) or the scores and raw logits of a query against every text.

  usage: make_tiny.py OUT_DIR [MINILM_DIR]
"""

import json
import os
import shutil
import sys

import torch
from sentence_transformers import CrossEncoder, SentenceTransformer, models
from tokenizers import Tokenizer, decoders, models as tmodels, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    PreTrainedTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
    XLMRobertaModel,
)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "../../.."))
QUERY = "what does the quick brown fox do?"


def texts():
    """The golden test's 20 texts: short, long (truncated), empty, accents, CJK, emoji."""
    with open(os.path.join(ROOT, "model-server/tests/fixtures/reference.json")) as f:
        return [case["text"] for case in json.load(f)["cases"]]


def widths(**extra):
    return dict(
        hidden_size=384,
        num_hidden_layers=2,
        intermediate_size=1536,
        hidden_act="gelu",
        **extra,
    )


def bert_config(**extra):
    return BertConfig(vocab_size=30522, num_attention_heads=12, **widths(**extra))


def xlmr_tokenizer(corpus, out):
    """A Unigram tokenizer with XLM-R's special tokens and pair template, saved in `out`."""
    tok = Tokenizer(tmodels.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.UnigramTrainer(vocab_size=800, special_tokens=specials, unk_token="<unk>")
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )
    fast.save_pretrained(out)
    return tok.get_vocab_size()


def xlmr_config(vocab, **extra):
    return XLMRobertaConfig(
        vocab_size=vocab,
        num_attention_heads=6,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
        **widths(**extra),
    )


def token_counts(tokenizer, items, max_length):
    """Tokens of each text or pair, tokenized as a batch as sentence-transformers does (a lone
    call would drop an empty second text and count a single sequence)."""
    columns = [list(column) for column in zip(*items)]
    encoded = tokenizer(*columns, truncation=True, max_length=max_length)
    return [len(ids) for ids in encoded["input_ids"]]


def embedder(out, name, seed, encoder, tokenizer_dir, max_len, pooling, dense=None, normalize=True, prompts=None):
    torch.manual_seed(seed)
    hf = os.path.join(out, "hf-" + name)
    encoder.save_pretrained(hf)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(hf)
    transformer = models.Transformer(hf, max_seq_length=max_len)
    stack = [transformer, models.Pooling(384, pooling_mode=pooling)]
    if dense:
        stack.append(models.Dense(384, dense, activation_function=torch.nn.Tanh()))
    if normalize:
        stack.append(models.Normalize())
    model = SentenceTransformer(modules=stack, prompts=prompts or {}, device="cpu")
    model.eval()
    directory = os.path.join(out, name)
    model.save(directory)
    items = texts()
    cases = [{"prompt_name": None, "embeddings": model.encode(items, convert_to_numpy=True).tolist()}]
    for prompt in prompts or {}:
        vectors = model.encode(items, prompt_name=prompt, convert_to_numpy=True)
        cases.append({"prompt_name": prompt, "embeddings": vectors.tolist()})
    tokenizer = model.tokenizer
    reference = {
        "kind": "embed",
        "texts": items,
        "tokens": token_counts(tokenizer, [(t,) for t in items], max_len),
        "normalized": normalize,
        "cases": cases,
    }
    with open(os.path.join(directory, "reference.json"), "w") as f:
        json.dump(reference, f)
    shutil.rmtree(hf)


def reranker(out, name, seed, classifier, tokenizer_dir, max_len):
    torch.manual_seed(seed)
    # Random init gives logits near 0 for every pair; a wider output layer spreads them over
    # O(1), so a score off by 1e-5 is a real difference, not noise around 0.5.
    with torch.no_grad():
        head = getattr(classifier.classifier, "out_proj", classifier.classifier)
        head.weight.normal_(0.0, 0.3)
    hf = os.path.join(out, "hf-" + name)
    classifier.save_pretrained(hf)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(hf)
    model = CrossEncoder(hf, max_length=max_len, device="cpu")
    directory = os.path.join(out, name)
    model.save(directory)
    items = texts()
    pairs = [(QUERY, t) for t in items]
    reference = {
        "kind": "rerank",
        "query": QUERY,
        "texts": items,
        "tokens": token_counts(model.tokenizer, pairs, max_len),
        "scores": model.predict(pairs).tolist(),
        "logits": model.predict(pairs, activation_fn=torch.nn.Identity()).tolist(),
    }
    with open(os.path.join(directory, "reference.json"), "w") as f:
        json.dump(reference, f)
    shutil.rmtree(hf)


def main():
    out = sys.argv[1]
    minilm = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "models/all-MiniLM-L6-v2")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(2)
    xlmr_tok = os.path.join(out, "xlmr-tokenizer")
    with open(os.path.join(ROOT, "model-server/src/backend/calibration.txt")) as f:
        corpus = f.read().splitlines() + texts()
    vocab = xlmr_tokenizer(corpus, xlmr_tok)

    torch.manual_seed(1)
    embedder(out, "bert-cls-prompts", 1, BertModel(bert_config(), add_pooling_layer=False), minilm, 128, "cls",
             prompts={"query": "query: ", "passage": "passage: "})
    torch.manual_seed(2)
    embedder(out, "bert-max", 2, BertModel(bert_config(), add_pooling_layer=False), minilm, 128, "max",
             normalize=False)
    torch.manual_seed(3)
    embedder(out, "xlmr-mean-dense", 3, XLMRobertaModel(xlmr_config(vocab), add_pooling_layer=False), xlmr_tok, 64,
             "mean", dense=256, normalize=False)
    torch.manual_seed(4)
    reranker(out, "bert-reranker", 4, BertForSequenceClassification(bert_config(num_labels=1)), minilm, 128)
    torch.manual_seed(5)
    reranker(out, "xlmr-reranker", 5, XLMRobertaForSequenceClassification(xlmr_config(vocab, num_labels=1)),
             xlmr_tok, 96)
    shutil.rmtree(xlmr_tok)
    print(f"tiny models and references in {out}")


if __name__ == "__main__":
    main()
