"""The built-in character-level tokenizer: one token per printable ASCII character, as a standard HF tokenizer."""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>"]
CHARS = ["\n", *(chr(i) for i in range(32, 127))]


def char_tokenizer() -> PreTrainedTokenizerFast:
    """A tokenizer that splits text into single characters; saves and loads with `AutoTokenizer`."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        split_special_tokens=True,  # text that spells "<eos>" is five characters, not the special token
    )
