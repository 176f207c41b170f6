"""ImageNet model fetcher (tar.gz of slim checkpoint files), from local file:// URLs only: the first
download records its SHA256, later ones are checked against it."""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from daa_tf.models import fetch
from daa_tf.models.fetch import FetchError
from tests.helpers import REPO_ROOT

MODEL = "ens_adv_inception_resnet_v2"
RELEASE_FILES = {f"{MODEL}.ckpt.index": b"fake index",
                 f"{MODEL}.ckpt.data-00000-of-00001": b"\0" * 64}


@pytest.fixture(autouse=True)
def no_url_override(monkeypatch):
    for var in [v for v in os.environ if v.startswith("DAA_TF_MODEL_URL_")]:
        monkeypatch.delenv(var)


def make_tar(path: Path, files=None, folder: str = "", links=()) -> str:
    """A .tar.gz of ``files`` (default: the release's two files) under ``folder``; its SHA256.

    ``links``: ``(name, target, type)`` members (tarfile.SYMTYPE / LNKTYPE) added after the files.
    """
    with tarfile.open(path, "w:gz") as tar:
        for name, content in (RELEASE_FILES if files is None else files).items():
            info = tarfile.TarInfo(f"{folder}/{name}" if folder else name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for name, target, kind in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def quiet(_: str) -> None:
    pass


def test_fetch_end_to_end_reuse_and_loader_resolution(tmp_path):
    digest = make_tar(tmp_path / "release.tar.gz")
    dest, logs = tmp_path / "models", []
    out = fetch.fetch("imagenet", MODEL, dest, url=(tmp_path / "release.tar.gz").as_uri(),
                      log=logs.append)
    assert out == dest / MODEL
    for name, content in RELEASE_FILES.items():
        assert (out / name).read_bytes() == content
    assert not (out / "checkpoint").exists()
    info = json.loads((out / fetch.INFO_FILE).read_text())
    assert info == {"challenge": "imagenet", "model": MODEL, "url": info["url"], "sha256": digest,
                    "git_blob": info["git_blob"], "verified": ""}
    assert any("no published digest" in line and digest in line and fetch.RECORD_FILE in line
               for line in logs)
    assert json.loads((dest / fetch.RECORD_FILE).read_text())[f"imagenet/{MODEL}"]["sha256"] \
        == digest
    assert sorted(p.name for p in dest.iterdir()) == [fetch.RECORD_FILE, MODEL]  # no temp files
    # the model loader finds the prefix in the folder although there is no state file
    from daa_tf.models.checkpoint import resolve_checkpoint
    assert resolve_checkpoint(out) == str(out / f"{MODEL}.ckpt")
    # reused: no download (the URL is gone)
    (tmp_path / "release.tar.gz").unlink()
    assert fetch.fetch("imagenet", MODEL, dest, url=(tmp_path / "release.tar.gz").as_uri(),
                       log=logs.append) == out
    assert "reusing" in logs[-1]


def test_nested_folder_verified_digest_and_env_url(tmp_path, monkeypatch):
    digest = make_tar(tmp_path / "r.tgz", folder=f"release/{MODEL}")
    monkeypatch.setenv("DAA_TF_MODEL_URL_IMAGENET_ENS_ADV_INCEPTION_RESNET_V2",
                       (tmp_path / "r.tgz").as_uri())
    assert fetch.model_url("imagenet", MODEL) == (tmp_path / "r.tgz").as_uri()
    out = fetch.fetch("imagenet", MODEL, tmp_path / "d", sha256=digest.upper(), log=quiet)
    assert (out / f"{MODEL}.ckpt.index").is_file()
    assert json.loads((out / fetch.INFO_FILE).read_text())["sha256"] == digest


def test_fetch_model_caches(tmp_path, monkeypatch):
    make_tar(tmp_path / "r.tar.gz")
    monkeypatch.setenv(fetch.url_env_var("imagenet", MODEL), (tmp_path / "r.tar.gz").as_uri())
    out = fetch.fetch_model("imagenet", cache_dir=tmp_path / "cache", log=quiet)
    assert out == tmp_path / "cache" / "imagenet" / MODEL and fetch.has_checkpoint(out)
    (tmp_path / "r.tar.gz").unlink()  # second call must not download
    assert fetch.fetch_model("imagenet", MODEL, cache_dir=tmp_path / "cache", log=quiet) == out


def test_a_changed_tarball_is_refused_and_deleted(tmp_path):
    first = make_tar(tmp_path / "r.tar.gz")
    url, dest = (tmp_path / "r.tar.gz").as_uri(), tmp_path / "m"
    fetch.fetch("imagenet", MODEL, dest, url=url, log=quiet)
    shutil.rmtree(dest / MODEL)
    changed = make_tar(tmp_path / "r.tar.gz", files={**RELEASE_FILES,
                                                     f"{MODEL}.ckpt.index": b"other"})
    with pytest.raises(FetchError, match=f"expected {first} .*got {changed}"):
        fetch.fetch("imagenet", MODEL, dest, url=url, log=quiet)
    assert sorted(p.name for p in dest.iterdir()) == [fetch.RECORD_FILE]


def test_sha_mismatch_leaves_nothing(tmp_path):
    make_tar(tmp_path / "r.tar.gz")
    with pytest.raises(FetchError, match="SHA256 mismatch"):
        fetch.fetch("imagenet", MODEL, tmp_path / "m", url=(tmp_path / "r.tar.gz").as_uri(),
                    sha256="0" * 64, log=quiet)
    assert list((tmp_path / "m").iterdir()) == []


@pytest.mark.parametrize("files, links, message", [
    ({"../evil.ckpt.index": b"x"}, (), "refusing tar member '../evil.ckpt.index'"),
    ({"/tmp/abs.ckpt.index": b"x"}, (), "refusing tar member '/tmp/abs.ckpt.index'"),
    (None, [("link.ckpt.index", "/etc/passwd", tarfile.SYMTYPE)], "links and special files"),
    (None, [("hard.ckpt.index", "../x", tarfile.LNKTYPE)], "links and special files"),
    ({"readme.txt": b"no checkpoint"}, (), "the tarball holds no TF checkpoint"),
])
def test_bad_tarballs_leave_nothing(tmp_path, files, links, message):
    make_tar(tmp_path / "bad.tar.gz", files=files, links=links)
    dest = tmp_path / "m"
    with pytest.raises(FetchError, match=message):
        fetch.fetch("imagenet", MODEL, dest, url=(tmp_path / "bad.tar.gz").as_uri(), log=quiet)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil.ckpt.index").exists()


@pytest.mark.parametrize("content", [b"<html>not found</html>", None])
def test_not_a_tarball_or_truncated(tmp_path, content):
    path = tmp_path / "r.tar.gz"
    if content is None:  # a download cut short
        make_tar(path, files={f"{MODEL}.ckpt.data-00000-of-00001": os.urandom(200_000)})
        content = path.read_bytes()[:50_000]
    path.write_bytes(content)
    with pytest.raises(FetchError, match=r"not a \(complete\) tar archive"):
        fetch.fetch("imagenet", MODEL, tmp_path / "m", url=path.as_uri(), log=quiet)
    assert list((tmp_path / "m").iterdir()) == []


def test_unreachable_url_says_how_to_place_the_files(tmp_path):
    with pytest.raises(FetchError, match=r"could not download .*Offline\?.*tar xzf.*"
                                         "DAA_TF_MODEL_URL_IMAGENET_ENS_ADV_INCEPTION_RESNET_V2"):
        fetch.fetch("imagenet", MODEL, tmp_path / "m", url=(tmp_path / "none.tgz").as_uri(),
                    log=quiet)


def test_tables_and_names():
    assert fetch.RELEASES[("imagenet", MODEL)].url == (
        "http://download.tensorflow.org/models/ens_adv_inception_resnet_v2_2017_08_18.tar.gz")
    assert fetch.model_url("imagenet", MODEL) == fetch.RELEASES[("imagenet", MODEL)].url
    assert ("imagenet", MODEL) not in fetch.PINNED
    assert "imagenet" not in fetch.CHALLENGES  # MadryLab's tables are unchanged
    with pytest.raises(ValueError, match="unknown ImageNet model 'adv_trained'"):
        fetch.fetch("imagenet", "adv_trained")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAA_TF_MODEL_URL_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run([sys.executable, "-m", "challenges.fetch_model", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60)


def test_cli(tmp_path):
    digest = make_tar(tmp_path / "r.tar.gz")
    url = (tmp_path / "r.tar.gz").as_uri()
    result = run_cli("--challenge=imagenet", f"--dest={tmp_path / 'm'}", f"--url={url}",
                     cwd=tmp_path)  # the ImageNet model is the default
    assert result.returncode == 0, result.stderr
    assert digest in result.stdout
    assert (tmp_path / "m" / MODEL / f"{MODEL}.ckpt.index").is_file()
    result = run_cli("--challenge=imagenet", "--model=natural", f"--url={url}", cwd=tmp_path)
    assert result.returncode == 1 and "unknown ImageNet model 'natural'" in result.stderr
    result = run_cli("--challenge=mnist", f"--model={MODEL}", f"--url={url}", cwd=tmp_path)
    assert result.returncode == 1 and "unknown model" in result.stderr
