"""Build the offline tiny LLaVA model used by the tests and the demo.

No model can be downloaded here, so ICU-Bench builds its own vision-language model: a small CLIP vision tower
(64 px images, 16 px patches → 16 image tokens), LLaVA's two-layer projector and a small Llama decoder, plus a
byte-level BPE tokenizer trained with ``tokenizers`` on the benchmark's own text. The result is an ordinary
Hugging Face model dir (safetensors weights, processor, chat template) that reloads offline with
``AutoModelForImageTextToText`` / ``AutoProcessor``. The recipe (sizes, the CLS/feature-count pitfall, why the
slow image processor) is in :class:`TinyConfig` and the builders below.

Same seed and same corpus → byte-identical weights and tokenizer.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from icu_tasks.errors import ConfigError
from icu_tasks.harness.prompts import question_text
from icu_tasks.records.layout import check_parents, follow_umask

#: LLaVA-1.5-style conversation (``<s>USER: <image>\n{question}\nASSISTANT: {answer}</s>``) over content lists.
#: The answer turn ends with EOS so a fine-tuned model learns to stop. String contents are accepted too.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['content'] is string %}{% set parts = [{'type': 'text', 'text': message['content']}] %}"
    "{% else %}{% set parts = message['content'] %}{% endif %}"
    "{% if message['role'] == 'system' %}"
    "{% for part in parts if part['type'] == 'text' %}{{ part['text'] }}{{ '\\n' }}{% endfor %}"
    "{% elif message['role'] == 'user' %}USER: "
    "{% for part in parts if part['type'] == 'image' %}<image>{{ '\\n' }}{% endfor %}"
    "{% for part in parts if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}{{ '\\n' }}"
    "{% else %}ASSISTANT: "
    "{% for part in parts if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}{{ eos_token }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

PAD, BOS, EOS, IMAGE = "<pad>", "<s>", "</s>", "<image>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, IMAGE)


@dataclass
class TinyConfig:
    """Sizes of the tiny model (defaults: the ~3.7 M-parameter recipe that memorises the demo's profiles)."""

    vocab_size: int = 1024
    image_size: int = 64
    patch_size: int = 16
    vision_hidden: int = 128
    vision_layers: int = 2
    vision_heads: int = 4
    vision_ffn: int = 512
    text_hidden: int = 256
    text_layers: int = 4
    text_heads: int = 4
    text_ffn: int = 512
    max_positions: int = 512

    def __post_init__(self) -> None:
        if self.vocab_size < 300:
            raise ConfigError(f"vocab_size must be >= 300 (256 bytes + specials), got {self.vocab_size}")
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        for hidden, heads, what in (
            (self.vision_hidden, self.vision_heads, "vision"),
            (self.text_hidden, self.text_heads, "text"),
        ):
            if heads < 1 or hidden % heads:
                raise ConfigError(f"{what} hidden size {hidden} is not divisible by {heads} heads")
        for name in ("vision_layers", "text_layers", "vision_ffn", "text_ffn", "max_positions"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def image_tokens(self) -> int:
        """Image placeholder tokens per image (patch features; the CLS feature is dropped)."""
        return (self.image_size // self.patch_size) ** 2


#: Words of :func:`builtin_corpus`.
_FIRST = ("Maria", "John", "Aiko", "Omar", "Lena", "Pedro", "Chen", "Fatima", "Igor", "Sara", "Kwame", "Noor")
_LAST = ("Lopez", "Smith", "Tanaka", "Haddad", "Berg", "Silva", "Wang", "Diallo", "Petrov", "Rossi", "Mensah")
_DIAGNOSES = ("hypertension", "type 2 diabetes", "asthma", "migraine", "anemia", "bronchitis", "gastritis")
_MEDS = ("metformin 500 mg", "lisinopril 10 mg", "salbutamol inhaler", "ibuprofen 400 mg", "iron sulfate")
_JOBS = ("nurse", "software engineer", "accountant", "welder", "teacher", "logistics manager", "chef")
_ORGS = ("Riverside General Hospital", "Northgate Clinic", "Bluefield Logistics Ltd", "Acme Steel Works")
_STREETS = ("Oak Street", "Maple Avenue", "Harbor Road", "Hill Lane", "Station Square")
_QUESTIONS = (
    "What is the name of the person in this document?",
    "What is {name}'s date of birth?",
    "What is the ID number of the person in this document?",
    "Where does {name} live?",
    "What was {name} diagnosed with?",
    "Which medication was prescribed to the person in this document?",
    "Who is the attending doctor of {name}?",
    "At which hospital was {name} treated?",
    "Who employs {name}?",
    "What is the monthly salary of the person in this document?",
    "What position does {name} hold?",
    "When does the contract of {name} start?",
    "When does the contract of the person in this document end?",
    "Which company is named in this document?",
    "What is the document type shown?",
)


def builtin_corpus(seed: int = 0, n: int = 400) -> list[str]:
    """A small synthetic corpus in the benchmark's style, for building a tokenizer without a data dir."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        lines.append(rng.choice(_QUESTIONS).format(name=name))
        lines.append(rng.choice(_answers(rng, name)))
    lines += ["Medical report", "Employment contract", "USER:", "ASSISTANT:", "0123456789"]
    return lines


def _answers(rng: random.Random, name: str) -> list[str]:
    """One candidate answer of every kind (each drawn from ``rng``, in this order); the caller picks one."""
    return [
        name,
        rng.choice(_DIAGNOSES),
        rng.choice(_MEDS),
        rng.choice(_JOBS),
        rng.choice(_ORGS),
        f"{rng.randint(1, 999)} {rng.choice(_STREETS)}, {rng.choice(['Springfield', 'Lakeside'])}",
        f"{rng.randint(1950, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        f"ID-{rng.randint(10**7, 10**8 - 1)}",
        f"${rng.randint(2000, 9000):,} per month",
        f"Dr. {rng.choice(_FIRST)} {rng.choice(_LAST)}",
    ]


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 1024,
    special_tokens: Sequence[str] = SPECIAL_TOKENS,
    **token_kwargs: Any,
):
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it as a transformers fast tokenizer.

    Byte-level BPE can encode any string (no unknown token). ``token_kwargs`` name the roles of the special
    tokens (default: LLaVA's ``<s>``, ``</s>``, ``<pad>`` and ``<image>`` as the image token).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [t for t in texts if t]
    if not texts:
        raise ConfigError("cannot train the tiny tokenizer on an empty corpus")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    roles = token_kwargs or {
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "extra_special_tokens": {"image_token": IMAGE},
    }
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=4096, **roles)


def _make_processor(tokenizer, cfg: TinyConfig):
    from transformers import LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    # Slow (PIL) processor: the fast one needs torchvision, which has no CPU build here. Documents are not
    # square: resize the whole page to image_size × image_size instead of cropping its centre.
    image_processor = CLIPImageProcessorPil(
        size={"height": cfg.image_size, "width": cfg.image_size}, do_center_crop=False
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=cfg.patch_size,
        vision_feature_select_strategy="default",
        # "default" drops CLIP's CLS feature; the processor counts patches + 1 - 1 tokens to match.
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )


def _make_model(tokenizer, cfg: TinyConfig, seed: int):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    vision = CLIPVisionConfig(
        hidden_size=cfg.vision_hidden,
        intermediate_size=cfg.vision_ffn,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        projection_dim=cfg.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_hidden,
        intermediate_size=cfg.text_ffn,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        num_key_value_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        # The last CLIP layer (not LLaVA's usual -2): with 2 layers, -2 would leave a layer unused.
        vision_feature_layer=-1,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = (
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )
    gen.do_sample = False
    return model


def create_tiny_model(texts: Iterable[str] | None = None, seed: int = 0, config: TinyConfig | None = None):
    """The tiny LLaVA model (eval mode) and its processor, in memory; see :func:`build_tiny_model`."""
    import torch

    cfg = config or TinyConfig()
    corpus = list(texts) if texts is not None else builtin_corpus(seed)
    # The chat template's role words appear in every example: make them whole tokens ("ASSISTANT:" would be
    # 10 byte-level tokens otherwise), which shortens every training and scoring sequence.
    corpus += ["USER:", "ASSISTANT:"] * max(100, len(corpus) // 4)
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(corpus, cfg.vocab_size)
    return _make_model(tokenizer, cfg, seed), _make_processor(tokenizer, cfg)


def build_tiny_model(
    out_dir: str | os.PathLike,
    texts: Iterable[str] | None = None,
    seed: int = 0,
    config: TinyConfig | None = None,
    overwrite: bool = False,
) -> Path:
    """Build, save and return the dir of a tiny LLaVA model whose tokenizer is trained on ``texts``.

    Args:
        out_dir: where to save (``save_pretrained`` layout, safetensors). Written to a temporary sibling dir and
            renamed, so it is complete or absent.
        texts: tokenizer training corpus (questions, answers, choices, profile values); ``None`` → a built-in
            synthetic corpus.
        seed: seeds the weight initialisation (and the built-in corpus).
        config: sizes; defaults to :class:`TinyConfig`.
        overwrite: replace an existing ``out_dir``; otherwise an existing non-empty dir is an error.
    """
    cfg = config or TinyConfig()
    out = check_out_dir(out_dir, overwrite)
    model, processor = create_tiny_model(texts, seed, cfg)
    info = {"builder": "icu_unlearn.models.tiny", "seed": seed, "config": asdict(cfg)}
    return save_atomically(out, model, [processor], info)


def check_out_dir(out_dir: str | os.PathLike, overwrite: bool) -> Path:
    """``out_dir`` as a Path; an existing non-empty dir is an error unless ``overwrite``."""
    out = Path(out_dir)
    check_parents(out)
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(
            f"output dir already exists and is not empty: {out} (pass --overwrite to replace it)"
        )
    return out


def save_atomically(
    out: Path, model, parts: Sequence[Any], info: dict, finish: Callable[[Path], None] | None = None
) -> Path:
    """Save model + processor parts + ``tiny_model.json`` to a temp sibling dir, then rename it to ``out``.

    ``finish(tmp_dir)`` may add or edit files before the rename.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        for part in parts:
            part.save_pretrained(tmp)
        info = {**info, "params": sum(p.numel() for p in model.parameters())}
        (tmp / "tiny_model.json").write_text(json.dumps(info, indent=2) + "\n")
        if finish is not None:
            finish(tmp)
        follow_umask(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def corpus_from_data(data_dir: str | os.PathLike | None = None) -> list[str]:
    """Tokenizer corpus from a benchmark data dir: the exact prompt text of every QA row, its answer and
    choices, and every text value of the profiles (validated through ``icu_tasks.data.dataset.open_data``)."""
    import pyarrow.parquet as pq

    from icu_tasks.data.dataset import open_data
    from icu_tasks.data.schema import PROFILES_FILE

    data = open_data(data_dir)
    texts: list[str] = []
    for row in data.rows():
        texts.append(question_text(row))
        texts.append(str(row["answer"]))
        texts.extend(str(c) for c in row.get("choices") or ())
    profiles = Path(data.root) / PROFILES_FILE
    if profiles.is_file():
        for column in pq.read_table(profiles).to_pylist():
            texts.extend(str(v) for v in column.values() if isinstance(v, str) and v)
    return texts
