"""The released model files: downloaded once, verified, unpacked safely, cached.

    from daa_tf.models import fetch_model, load_madry_mnist
    model = load_madry_mnist(fetch_model("mnist", "adv_trained"))  # ~/.cache/daa_tf/mnist/...

Sources: MadryLab's challenge checkpoints (``mnist`` / ``cifar10`` x ``natural``, ``adv_trained``,
``secret``: the zips of MadryLab's own ``fetch_model.py``) and the ImageNet model attacked on the
NIPS 2017 images (``imagenet`` / ``ens_adv_inception_resnet_v2``, a tarball of TF-slim files).

Verification: MadryLab's MNIST zips are files of the public git repository
``MadryLab/mnist_challenge_models``, so their git blob ids (SHA-1 of ``b"blob <size>\\0"`` +
content) are pinned here (:data:`PINNED`) and checked after every download. The other files have
no published digest: the first download records its SHA256 in ``<dest>/digests.json``
(:data:`RECORD_FILE`, beside the downloaded models) and every later download into ``dest`` is
checked against it; the log says which check was made. A mismatch deletes the download and raises
FetchError naming the file and both digests.

Unpacking: the archive (zip, or tar.gz for ImageNet) is downloaded to a temporary file in
``dest``, checked, extracted to a temporary folder there (members with absolute paths, ``..``, a
drive, links or special files are refused before anything is written), and the checkpoint folder
is moved into place as ``dest/<model>`` in one ``os.replace``: a failure leaves nothing
half-written. A ``dest/<model>`` that already holds a checkpoint is reused without download.

URLs can be overridden with ``url=`` or the environment variable
``DAA_TF_MODEL_URL_<CHALLENGE>_<MODEL>`` (e.g. ``DAA_TF_MODEL_URL_MNIST_ADV_TRAINED``); the pinned
digests apply to whatever URL serves a pinned file. TensorFlow-free.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import http.client
import json
import os
import shutil
import socket
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable, Dict, Optional, Tuple, Union

from daa_tf.files import atomic_write

PathLike = Union[str, "os.PathLike[str]"]
Log = Callable[[str], None]

CHALLENGES = ("mnist", "cifar10")
MODELS = ("natural", "adv_trained", "secret")
IMAGENET = "imagenet"
IMAGENET_MODELS = ("ens_adv_inception_resnet_v2",)
INFO_FILE = "fetch_info.json"   # inside dest/<model>: where it came from, its digest
RECORD_FILE = "digests.json"    # in dest: SHA256 of first downloads of unpinned files
_CHUNK = 1 << 20
_MNIST = "https://github.com/MadryLab/mnist_challenge_models/raw/master/"


@dataclasses.dataclass(frozen=True)
class Release:
    """A released file: ``url``, archive ``kind`` (``zip`` or ``tarball``) and, when published,
    its git blob id (``git_blob``: 40 hex digits)."""

    url: str
    kind: str = "zip"
    git_blob: Optional[str] = None


RELEASES: Dict[Tuple[str, str], Release] = {
    ("mnist", "natural"): Release(_MNIST + "natural.zip",
                                  git_blob="464dce662b07446b47bcef3f93245afebdb4e197"),
    ("mnist", "adv_trained"): Release(_MNIST + "adv_trained.zip",
                                      git_blob="5522769558a570818f3e79bf465dd7f094f5783a"),
    ("mnist", "secret"): Release(_MNIST + "secret.zip",
                                 git_blob="d8c1cbea2b5ddd98fbe8b870b00865c60d51f316"),
    ("cifar10", "natural"): Release("https://www.dropbox.com/s/cgzd5odqoojvxzk/natural.zip?dl=1"),
    ("cifar10", "adv_trained"): Release(
        "https://www.dropbox.com/s/g4b6ntrp8zrudbz/adv_trained.zip?dl=1"),
    ("cifar10", "secret"): Release("https://www.dropbox.com/s/ywc0hg8lr5ba8zd/secret.zip?dl=1"),
    (IMAGENET, "ens_adv_inception_resnet_v2"): Release(
        "http://download.tensorflow.org/models/ens_adv_inception_resnet_v2_2017_08_18.tar.gz",
        kind="tarball"),
}
PINNED: Dict[Tuple[str, str], str] = {key: r.git_blob for key, r in RELEASES.items()
                                      if r.git_blob is not None}


class FetchError(RuntimeError):
    """A model could not be downloaded, verified or put in place; the message says what to do."""


def check_name(challenge: str, model: str) -> None:
    """ValueError naming the choices for an unknown ``challenge`` / ``model``."""
    if challenge == IMAGENET:
        if model not in IMAGENET_MODELS:
            raise ValueError(f"unknown ImageNet model {model!r}; expected one of "
                             f"{IMAGENET_MODELS}")
        return
    if challenge not in CHALLENGES:
        raise ValueError(f"unknown challenge {challenge!r}; expected one of "
                         f"{(*CHALLENGES, IMAGENET)}")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")


def url_env_var(challenge: str, model: str) -> str:
    """Name of the environment variable overriding the URL of ``challenge``/``model``."""
    return f"DAA_TF_MODEL_URL_{challenge.upper()}_{model.upper()}"


def model_url(challenge: str, model: str) -> str:
    """The download URL: ``$DAA_TF_MODEL_URL_<CHALLENGE>_<MODEL>`` if set, else the release's."""
    check_name(challenge, model)
    return os.environ.get(url_env_var(challenge, model)) or RELEASES[(challenge, model)].url


def default_cache_dir() -> Path:
    """``$DAA_TF_CACHE`` if set, else ``~/.cache/daa_tf``."""
    return Path(os.environ.get("DAA_TF_CACHE") or Path.home() / ".cache" / "daa_tf").expanduser()


def has_checkpoint(folder: PathLike) -> bool:
    """True when ``folder`` holds a TF checkpoint (a ``checkpoint`` file or an ``*.index`` file)."""
    folder = Path(folder)
    return folder.is_dir() and ((folder / "checkpoint").is_file() or any(folder.glob("*.index")))


# ------------------------------------------------------------------------------------ digests


def file_digests(path: PathLike) -> Dict[str, str]:
    """``{"sha256": ..., "git_blob": ...}`` of the file ``path`` (hex); the git blob id is the
    SHA-1 of ``b"blob <size>\\0"`` followed by the content (``git hash-object``)."""
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(b"blob %d\0" % os.path.getsize(path))
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            sha256.update(chunk)
            blob.update(chunk)
    return {"sha256": sha256.hexdigest(), "git_blob": blob.hexdigest()}


def _read_record(path: Path) -> Dict[str, dict]:
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise FetchError(f"{path} is not a readable digest record ({err}): fix or delete it "
                         "(its digests are then recorded afresh)") from None
    return record if isinstance(record, dict) else {}


def verify(path: Path, challenge: str, model: str, url: str, dest: Path,
           sha256: Optional[str] = None, log: Log = print) -> Dict[str, str]:
    """Checks the downloaded ``path`` of ``challenge``/``model``: its git blob id against
    :data:`PINNED`, else its SHA256 against the first download's (``dest/digests.json``); and
    against ``sha256`` when given. Returns the file's digests and ``verified`` (how); FetchError
    naming the file, the expected and the actual digest on a mismatch (the caller deletes it)."""
    got = file_digests(path)
    name = f"{challenge}/{model} ({url})"

    def mismatch(kind: str, expected: str, actual: str, where: str) -> FetchError:
        return FetchError(f"{kind} mismatch for {name}: expected {expected} ({where}), got "
                          f"{actual}; the download is corrupt or the file changed, and it was "
                          "deleted")

    if sha256 is not None and got["sha256"] != sha256.lower():
        raise mismatch("SHA256", sha256.lower(), got["sha256"], "the sha256 argument")
    pinned = PINNED.get((challenge, model))
    if pinned is not None:
        if got["git_blob"] != pinned:
            raise mismatch("git blob id", pinned, got["git_blob"],
                           "MadryLab's published file, pinned in daa_tf.models.fetch")
        log(f"verified {name}: git blob id {pinned}, MadryLab's published file")
        return {**got, "verified": "git blob id pinned in daa_tf.models.fetch"}
    record_path = dest / RECORD_FILE
    key = f"{challenge}/{model}"
    seen = _read_record(record_path).get(key)
    if isinstance(seen, dict) and seen.get("sha256"):
        if got["sha256"] != seen["sha256"]:
            raise mismatch("SHA256", seen["sha256"], got["sha256"],
                           f"recorded at the first download in {record_path}; delete that entry "
                           "to accept a new release")
        log(f"verified {name}: SHA256 {got['sha256']} equals the first download's ({record_path})")
        return {**got, "verified": f"SHA256 recorded at the first download in {record_path}"}
    if sha256 is not None:
        log(f"verified {name}: SHA256 {got['sha256']} as given")
        return {**got, "verified": "SHA256 given by the caller"}
    return {**got, "verified": "", "record": str(record_path)}


def _remember(record_path: Path, challenge: str, model: str, url: str, sha256: str,
              log: Log) -> None:
    """Records the first download's ``sha256`` of ``challenge``/``model`` in ``record_path``."""
    record = _read_record(record_path)
    record[f"{challenge}/{model}"] = {"sha256": sha256, "url": url,
                                      "recorded": datetime.date.today().isoformat()}
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    atomic_write(record_path, lambda f: f.write(text), binary=False)
    log(f"no published digest for {challenge}/{model} ({url}): its SHA256 {sha256} is recorded "
        f"in {record_path}, and later downloads into {record_path.parent} are checked against it")


# ------------------------------------------------------------------------- download, unpack


def download(url: str, path: Path, timeout: float) -> None:
    """Streams ``url`` into the file ``path`` (``timeout`` seconds per socket operation);
    FetchError for a network failure, without the hint (the caller adds it)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as out:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
    except urllib.error.HTTPError as err:
        raise FetchError(f"could not download {url}: HTTP {err.code} {err.reason}.") from None
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError,
            http.client.HTTPException, ValueError) as err:
        raise FetchError(f"could not download {url} ({getattr(err, 'reason', err)}).") from None


def _outside(name: str) -> bool:
    """True for an archive member name that would land outside the extraction folder."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return name.startswith(("/", "\\")) or ".." in parts or bool(parts and ":" in parts[0])


def _refuse(kind: str, name: str, why: str) -> FetchError:
    return FetchError(f"refusing {kind} member {name!r} ({why}): the archive is not the release; "
                      "nothing was extracted")


def safe_extract(archive: Path, into: Path, kind: str) -> None:
    """Extracts the zip or (compressed) tarball ``archive`` into ``into``. Only regular files and
    folders inside ``into`` are accepted: a member with an absolute path, ``..`` or a drive, a
    symbolic or hard link or a special file is refused (FetchError) before anything is written."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    if _outside(info.filename):
                        raise _refuse("zip", info.filename, "outside the target folder")
                    kind_bits = stat.S_IFMT(info.external_attr >> 16)  # 0: not recorded
                    if kind_bits not in (0, stat.S_IFREG, stat.S_IFDIR):
                        raise _refuse("zip", info.filename, "links and special files are not "
                                      "extracted")
                z.extractall(into)
            return
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                if _outside(member.name):
                    raise _refuse("tar", member.name, "outside the target folder")
                if not (member.isfile() or member.isdir()):
                    raise _refuse("tar", member.name, "links and special files are not extracted")
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.12: a second safety net
                tar.extractall(into, members=members, filter="data")
            else:
                tar.extractall(into, members=members)
    except zipfile.BadZipFile as err:
        raise FetchError(f"downloaded file is not a zip archive ({err})") from None
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise FetchError(f"downloaded file is not a (complete) tar archive ({err})") from None


def _checkpoint_dir(root: Path, model: str, kind: str) -> Path:
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


def _hint(challenge: str, model: str, target: Path, url: str) -> str:
    if challenge == IMAGENET:
        return (f" Offline? Download {url} on a machine with network access, unpack it (tar xzf) "
                f"and place its checkpoint files ('*.ckpt.index', '*.ckpt.data-*') in {target}; "
                f"or set {url_env_var(challenge, model)} to a reachable URL of the tarball.")
    return (f" Offline? Download {url} on a machine with network access, unzip it and place the "
            f"checkpoint folder (files 'checkpoint', '*.index', '*.data-*') at {target}; or set "
            f"{url_env_var(challenge, model)} to a reachable URL of the zip.")


def fetch(challenge: str, model: str, dest: PathLike = "models", *, url: Optional[str] = None,
          sha256: Optional[str] = None, timeout: float = 60.0, log: Log = print) -> Path:
    """Downloads, verifies and unpacks ``challenge``/``model`` into ``dest/<model>``; returns that
    folder (reused without download when it already holds a checkpoint).

    ``url`` overrides the source (default: :func:`model_url`); ``sha256``: a digest the file must
    also have; ``timeout``: seconds per socket operation. Raises FetchError (network, digest,
    archive), leaving nothing behind in ``dest`` but the folder itself (and the digest record).
    """
    check_name(challenge, model)
    url = url or model_url(challenge, model)
    kind = RELEASES[(challenge, model)].kind
    dest = Path(dest)
    target = dest / model
    if has_checkpoint(target):
        log(f"{target} already holds a checkpoint: reusing it")
        return target
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FetchError(f"{target} exists but holds no checkpoint: remove it or pick another "
                         "destination")
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=f".{model}-", suffix=".part")
    os.close(fd)
    archive, unpacked = Path(tmp_name), None
    try:
        log(f"downloading {url}")
        try:
            download(url, archive, timeout)
        except FetchError as err:
            raise FetchError(str(err) + _hint(challenge, model, target, url)) from None
        digests = verify(archive, challenge, model, url, dest, sha256, log)
        unpacked = Path(tempfile.mkdtemp(dir=dest, prefix=f".{model}-extract-"))
        safe_extract(archive, unpacked, kind)
        found = _checkpoint_dir(unpacked, model, kind)
        info = {"challenge": challenge, "model": model, "url": url, "sha256": digests["sha256"],
                "git_blob": digests["git_blob"], "verified": digests["verified"]}
        (found / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if "record" in digests:
            _remember(Path(digests["record"]), challenge, model, url, digests["sha256"], log)
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
        archive.unlink(missing_ok=True)
        if unpacked is not None:
            shutil.rmtree(unpacked, ignore_errors=True)


def fetch_model(challenge: str, model: Optional[str] = None,
                cache_dir: Optional[PathLike] = None, *, log: Log = print) -> Path:
    """The checkpoint folder ``<cache_dir>/<challenge>/<model>`` of a released model, downloaded
    and verified on first use (:func:`fetch`), then reused. ``challenge``: ``mnist``, ``cifar10``
    (``model``: ``natural``, ``adv_trained`` (default), ``secret``) or ``imagenet`` (``model``:
    ``ens_adv_inception_resnet_v2``, the default); ``cache_dir``: default
    :func:`default_cache_dir`. Pass the folder to the model's loader, e.g.
    ``load_madry_mnist(fetch_model("mnist", "secret"))``."""
    if model is None:
        model = IMAGENET_MODELS[0] if challenge == IMAGENET else "adv_trained"
    check_name(challenge, model)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return fetch(challenge, model, cache / challenge, log=log)
