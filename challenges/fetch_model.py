"""Download a released model into a folder: a thin command over :mod:`daa_tf.models.fetch`
(which downloads, verifies and unpacks; see it for the digests and the safety rules).

    python -m challenges.fetch_model --challenge=mnist --model=adv_trained --dest=models/
    python -m challenges.fetch_model --challenge=imagenet --model=ens_adv_inception_resnet_v2

MadryLab's MNIST zips are checked against their pinned git blob ids; the other files against the
SHA256 their first download recorded in ``<dest>/digests.json`` (the log says which). The URL can
be overridden with ``--url`` or ``DAA_TF_MODEL_URL_<CHALLENGE>_<MODEL>``. Exit status 1 on failure,
with one sentence saying what to do.
"""
from __future__ import annotations

import sys

from absl import flags

from daa_tf.models.fetch import (CHALLENGES, IMAGENET, IMAGENET_MODELS, MODELS, FetchError,
                                 fetch, url_env_var)

__all__ = ["CHALLENGES", "MODELS", "IMAGENET", "IMAGENET_MODELS", "FetchError", "url_env_var",
           "define_flags", "main"]


def define_flags() -> None:
    """The command's flags."""
    flags.DEFINE_enum("challenge", "mnist", [*CHALLENGES, IMAGENET],
                      "Which MadryLab challenge, or imagenet.")
    flags.DEFINE_enum("model", "adv_trained", [*MODELS, *IMAGENET_MODELS],
                      f"Which released model (imagenet: {', '.join(IMAGENET_MODELS)}, its "
                      "default).")
    flags.DEFINE_string("dest", "models", "Folder receiving <dest>/<model>/ (and digests.json).")
    flags.DEFINE_string("url", None, "Download from this URL instead of the release's.")
    flags.DEFINE_string("sha256", None, "A SHA256 the downloaded file must also have.")
    flags.DEFINE_float("timeout", 60.0, "Network timeout in seconds.")


def main(f: flags.FlagValues) -> int:
    """Fetches the model the flags name; returns the exit status (1 on failure)."""
    model = f.model
    if f.challenge == IMAGENET and not f["model"].present:
        model = IMAGENET_MODELS[0]
    try:
        fetch(f.challenge, model, f.dest, url=f.url, sha256=f.sha256, timeout=f.timeout)
    except (FetchError, ValueError) as err:
        print(f"fetch_model: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from challenges import cli

    cli.main(define_flags, main)
