"""Download a MadryLab challenge checkpoint (the zips MadryLab's own ``fetch_model.py`` fetches),
or the ImageNet model attacked on the NIPS 2017 images (a tarball of TF-slim checkpoint files).

    python -m challenges.fetch_model --challenge=mnist --model=adv_trained --dest=models/
    python -m challenges.fetch_model --challenge=imagenet --model=ens_adv_inception_resnet_v2

The archive (zip, or tar.gz for ImageNet) is downloaded to a temporary file in ``dest``, its
SHA256 checked (or, where none is known, computed, printed with a warning and recorded in
``fetch_info.json``), extracted to a temporary folder in ``dest`` (members with absolute paths,
'..', links or special files are refused) and moved into place as ``dest/<model>`` in one
``os.replace``: a failure leaves nothing half-written. A ``dest/<model>`` that already holds a
checkpoint is reused.

The URL can be overridden with ``url=`` / ``--url`` or the environment variable
``DAA_TF_MODEL_URL_<CHALLENGE>_<MODEL>`` (e.g. ``DAA_TF_MODEL_URL_MNIST_ADV_TRAINED``,
``DAA_TF_MODEL_URL_IMAGENET_ENS_ADV_INCEPTION_RESNET_V2``).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable, Dict, Optional, Tuple, Union

PathLike = Union[str, os.PathLike]

CHALLENGES = ("mnist", "cifar10")
MODELS = ("natural", "adv_trained", "secret")

# The URLs of MadryLab's fetch_model.py (mnist_challenge and cifar10_challenge).
URLS: Dict[Tuple[str, str], str] = {
    ("mnist", "natural"):
        "https://github.com/MadryLab/mnist_challenge_models/raw/master/natural.zip",
    ("mnist", "adv_trained"):
        "https://github.com/MadryLab/mnist_challenge_models/raw/master/adv_trained.zip",
    ("mnist", "secret"): "https://github.com/MadryLab/mnist_challenge_models/raw/master/secret.zip",
    ("cifar10", "natural"): "https://www.dropbox.com/s/cgzd5odqoojvxzk/natural.zip?dl=1",
    ("cifar10", "adv_trained"): "https://www.dropbox.com/s/g4b6ntrp8zrudbz/adv_trained.zip?dl=1",
    ("cifar10", "secret"): "https://www.dropbox.com/s/ywc0hg8lr5ba8zd/secret.zip?dl=1",
}

# MadryLab publish no digests (their script only prints one): None = not pinned yet. Put a
# digest here once verified to make every later download check against it.
SHA256: Dict[Tuple[str, str], Optional[str]] = {key: None for key in URLS}

# ImageNet models (not MadryLab challenges: CHALLENGES and MODELS above stay MadryLab's). The
# release is a tarball of ens_adv_inception_resnet_v2.ckpt.{index,data-00000-of-00001} (Tramer et
# al. 2018, the model loaded by daa_tf.models.load_ens_adv_inception_resnet_v2).
IMAGENET = "imagenet"
IMAGENET_URLS: Dict[str, str] = {
    "ens_adv_inception_resnet_v2":
        "http://download.tensorflow.org/models/ens_adv_inception_resnet_v2_2017_08_18.tar.gz",
}
IMAGENET_MODELS = tuple(IMAGENET_URLS)
IMAGENET_SHA256: Dict[str, Optional[str]] = {key: None for key in IMAGENET_URLS}

INFO_FILE = "fetch_info.json"
_CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A model could not be downloaded, verified or put in place; the message says what to do."""


def _check_name(challenge: str, model: str) -> None:
    if challenge not in CHALLENGES:
        raise ValueError(f"unknown challenge {challenge!r}; expected one of {CHALLENGES}")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")


def url_env_var(challenge: str, model: str) -> str:
    """Name of the environment variable overriding the URL of ``challenge``/``model``."""
    return f"DAA_TF_MODEL_URL_{challenge.upper()}_{model.upper()}"


def model_url(challenge: str, model: str) -> str:
    """The download URL: ``$DAA_TF_MODEL_URL_<CHALLENGE>_<MODEL>`` if set, else MadryLab's."""
    _check_name(challenge, model)
    return os.environ.get(url_env_var(challenge, model)) or URLS[(challenge, model)]


def default_cache_dir() -> Path:
    """``$DAA_TF_CACHE`` if set, else ``~/.cache/daa_tf``."""
    return Path(os.environ.get("DAA_TF_CACHE") or Path.home() / ".cache" / "daa_tf").expanduser()


def has_checkpoint(folder: PathLike) -> bool:
    """True when ``folder`` holds a TF checkpoint (a ``checkpoint`` file or an ``*.index`` file)."""
    folder = Path(folder)
    return folder.is_dir() and ((folder / "checkpoint").is_file() or any(folder.glob("*.index")))


def _check_imagenet_name(model: str) -> None:
    if model not in IMAGENET_MODELS:
        raise ValueError(f"unknown ImageNet model {model!r}; expected one of {IMAGENET_MODELS}")


def imagenet_model_url(model: str = IMAGENET_MODELS[0]) -> str:
    """The download URL of ImageNet ``model``: ``$DAA_TF_MODEL_URL_IMAGENET_<MODEL>`` if set."""
    _check_imagenet_name(model)
    return os.environ.get(url_env_var(IMAGENET, model)) or IMAGENET_URLS[model]


def _manual_hint(challenge: str, model: str, target: Path, url: str) -> str:
    if challenge == IMAGENET:
        return (f"Offline? Download {url} on a machine with network access, unpack it (tar xzf) "
                f"and place its checkpoint files ('*.ckpt.index', '*.ckpt.data-*') in {target}; "
                f"or set {url_env_var(challenge, model)} to a reachable URL of the tarball.")
    return (f"Offline? Download {url} on a machine with network access, unzip it and place the "
            f"checkpoint folder (files 'checkpoint', '*.index', '*.data-*') at {target}; or set "
            f"{url_env_var(challenge, model)} to a reachable URL of the zip.")


def _download(url: str, out, timeout: float) -> str:
    """Stream ``url`` into the open binary file ``out``; returns the SHA256 hex digest."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        while True:
            chunk = response.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _outside(name: str) -> bool:
    """True for an archive member name that would land outside the extraction folder."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return name.startswith(("/", "\\")) or ".." in parts or bool(parts and ":" in parts[0])


def _safe_extract(zip_path: Path, into: Path) -> None:
    """Extract ``zip_path`` into ``into``, refusing members with absolute paths or '..'."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for name in archive.namelist():
                if _outside(name):
                    raise FetchError(f"refusing zip member {name!r} (outside the target folder)")
            archive.extractall(into)
    except zipfile.BadZipFile as err:
        raise FetchError(f"downloaded file is not a zip archive ({err})") from None


def _safe_extract_tar(tar_path: Path, into: Path) -> None:
    """Extract the (possibly compressed) tarball ``tar_path`` into ``into``.

    Only regular files and folders inside ``into`` are accepted: a member with an absolute path
    or '..', a symbolic or hard link or a device is refused (FetchError) before anything is
    written.
    """
    try:
        with tarfile.open(tar_path, "r:*") as archive:
            members = archive.getmembers()
            for member in members:
                if _outside(member.name):
                    raise FetchError(f"refusing tar member {member.name!r} (outside the target "
                                     "folder)")
                if not (member.isfile() or member.isdir()):
                    raise FetchError(f"refusing tar member {member.name!r} (links and special "
                                     "files are not extracted)")
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.12: a second safety net
                archive.extractall(into, members=members, filter="data")
            else:
                archive.extractall(into, members=members)
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise FetchError(f"downloaded file is not a (complete) tar archive ({err})") from None


def _find_checkpoint_dir(root: Path, model: str, kind: str = "zip") -> Path:
    """The folder of the extracted tree that holds the checkpoint (preferably named ``model``)."""
    found = [d for d in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]
             if has_checkpoint(d)]
    if not found:
        raise FetchError(f"the {kind} holds no TF checkpoint (no 'checkpoint' or '*.index' file)")
    named = [d for d in found if d.name == model]
    if len(named) == 1:
        return named[0]
    if len(found) == 1:
        return found[0]
    raise FetchError(f"the {kind} holds several checkpoint folders: "
                     f"{[str(d.relative_to(root)) for d in found]}")


def fetch(challenge: str, model: str, dest: PathLike = "models", *, url: Optional[str] = None,
          sha256: Optional[str] = None, timeout: float = 60.0,
          log: Callable[[str], None] = print) -> Path:
    """Download and unzip ``challenge``/``model`` into ``dest/<model>``; returns that folder.

    ``url`` overrides the source (default: :func:`model_url`). ``sha256`` is the expected digest
    (default: the ``SHA256`` table; where neither is known, the digest is printed with a warning
    and recorded in ``fetch_info.json``). ``timeout`` is per socket operation, in seconds. An
    existing ``dest/<model>`` with a checkpoint is reused without download. Raises FetchError
    (network, digest, archive), leaving nothing behind in ``dest`` but the folder itself.
    """
    _check_name(challenge, model)
    return _fetch_archive(challenge, model, Path(dest), url or model_url(challenge, model),
                          sha256 or SHA256.get((challenge, model)), "zip", "SHA256", timeout,
                          log)


def fetch_imagenet(model: str = IMAGENET_MODELS[0], dest: PathLike = "models", *,
                   url: Optional[str] = None, sha256: Optional[str] = None,
                   timeout: float = 60.0, log: Callable[[str], None] = print) -> Path:
    """Download and unpack ImageNet ``model`` (a .tar.gz) into ``dest/<model>``; returns it.

    The folder then holds the slim checkpoint files (e.g. ``ens_adv_inception_resnet_v2.ckpt.index``
    and ``.data-00000-of-00001``; no ``checkpoint`` state file), loadable by passing the folder to
    ``daa_tf.models.load_ens_adv_inception_resnet_v2``. ``url``: default
    :func:`imagenet_model_url`; ``sha256``: default the ``IMAGENET_SHA256`` table. Otherwise as
    :func:`fetch` (reuse, digest check, nothing half-written, FetchError).
    """
    _check_imagenet_name(model)
    return _fetch_archive(IMAGENET, model, Path(dest), url or imagenet_model_url(model),
                          sha256 or IMAGENET_SHA256.get(model), "tarball", "IMAGENET_SHA256",
                          timeout, log)


def _fetch_archive(challenge: str, model: str, dest: Path, url: str, sha256: Optional[str],
                   kind: str, table: str, timeout: float, log: Callable[[str], None]) -> Path:
    """Download ``url`` (a ``kind``: "zip" or "tarball") and put its checkpoint at dest/model."""
    expected = (sha256 or "").lower() or None
    target = dest / model
    if has_checkpoint(target):
        log(f"{target} already holds a checkpoint: reusing it")
        return target
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FetchError(f"{target} exists but holds no checkpoint: remove it or pick another "
                         "destination")
    dest.mkdir(parents=True, exist_ok=True)

    suffix = ".zip.part" if kind == "zip" else ".tar.gz.part"
    fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=f".{model}-", suffix=suffix)
    os.close(fd)
    tmp_file, tmp_dir = Path(tmp_name), None
    try:
        tmp_dir = Path(tempfile.mkdtemp(dir=dest, prefix=f".{model}-extract-"))
        log(f"downloading {url}")
        try:
            with open(tmp_file, "wb") as out:
                digest = _download(url, out, timeout)
        except urllib.error.HTTPError as err:
            raise FetchError(f"could not download {url}: HTTP {err.code} {err.reason}. "
                             + _manual_hint(challenge, model, target, url)) from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError,
                http.client.HTTPException, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise FetchError(f"could not download {url} ({reason}). "
                             + _manual_hint(challenge, model, target, url)) from None
        if expected is not None and digest != expected:
            raise FetchError(f"SHA256 mismatch for {url}: got {digest}, expected {expected}; "
                             "the download is corrupt or the file changed. Nothing was kept.")
        if expected is None:
            log(f"WARNING: no known SHA256 for {challenge}/{model}; downloaded file has SHA256 "
                f"{digest} (recorded in {target / INFO_FILE}; pin it in challenges/fetch_model.py "
                f"{table} once verified)")
        else:
            log(f"SHA256 verified: {digest}")
        if kind == "zip":
            _safe_extract(tmp_file, tmp_dir)
        else:
            _safe_extract_tar(tmp_file, tmp_dir)
        found = _find_checkpoint_dir(tmp_dir, model, kind)
        info = {"challenge": challenge, "model": model, "url": url, "sha256": digest,
                "verified": expected is not None}
        (found / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        try:
            os.replace(found, target)
        except OSError as err:
            if has_checkpoint(target):  # another process put it there meanwhile
                log(f"{target} appeared meanwhile: reusing it")
                return target
            raise FetchError(f"could not move the model into {target}: {err}") from None
        log(f"extracted model in {target}")
        return target
    finally:
        tmp_file.unlink(missing_ok=True)
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)


def ensure_model(challenge: str, model: str, cache_dir: Optional[PathLike] = None) -> Path:
    """Checkpoint folder ``<cache_dir>/<challenge>/<model>``, fetched on first use, then reused.

    ``cache_dir`` defaults to :func:`default_cache_dir`.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return fetch(challenge, model, cache / challenge)


def ensure_imagenet_model(model: str = IMAGENET_MODELS[0],
                          cache_dir: Optional[PathLike] = None) -> Path:
    """Checkpoint folder ``<cache_dir>/imagenet/<model>``, fetched on first use, then reused."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return fetch_imagenet(model, cache / IMAGENET)


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_enum("challenge", "mnist", [*CHALLENGES, IMAGENET],
                      "Which MadryLab challenge, or imagenet.")
    flags.DEFINE_enum("model", "adv_trained", [*MODELS, *IMAGENET_MODELS],
                      f"Which released model (imagenet: {', '.join(IMAGENET_MODELS)}, its "
                      "default).")
    flags.DEFINE_string("dest", "models", "Folder receiving <dest>/<model>/.")
    flags.DEFINE_string("url", None, "Download from this URL instead of the release's.")
    flags.DEFINE_string("sha256", None, "Expected SHA256 of the archive (overrides the table).")
    flags.DEFINE_float("timeout", 60.0, "Network timeout in seconds.")


def main(argv) -> int:
    """CLI entry point (absl): fetch the model named by the flags; exit status 1 on failure."""
    from absl import flags

    del argv
    f = flags.FLAGS
    try:
        if f.challenge == IMAGENET:
            model = f.model if f["model"].present else IMAGENET_MODELS[0]
            fetch_imagenet(model, f.dest, url=f.url, sha256=f.sha256, timeout=f.timeout)
        else:
            fetch(f.challenge, f.model, f.dest, url=f.url, sha256=f.sha256, timeout=f.timeout)
    except (FetchError, ValueError) as err:
        print(f"fetch_model: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
