"""The model fetcher (challenges.fetch_model): MadryLab's zips end to end against an HTTP server on
127.0.0.1, the ImageNet model's tar.gz of slim checkpoint files from local file:// URLs (no other
network); the refusals of bad archives, the cache, the command line."""
import functools
import hashlib
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from challenges import fetch_model
from challenges.fetch_model import FetchError
from tests.helpers import REPO_ROOT

CKPT_FILES = {"checkpoint": b'model_checkpoint_path: "checkpoint-1"\n',
              "checkpoint-1.index": b"fake index", "checkpoint-1.data-00000-of-00001": b"\0" * 64}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Loopback requests must not go through a proxy configured in the environment; no URL
    override from the environment."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in [v for v in os.environ if v.startswith("DAA_TF_MODEL_URL_")]:
        monkeypatch.delenv(var)


@pytest.fixture
def server(tmp_path):
    """Serves ``tmp_path/www`` on 127.0.0.1 (a free port); yields the base URL and the folder."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def make_zip(path: Path, folder: str = "adv_trained", files=None) -> str:
    """Zip ``files`` (default: a fake checkpoint) under ``folder/``; returns the SHA256."""
    with zipfile.ZipFile(path, "w") as z:
        for name, content in (CKPT_FILES if files is None else files).items():
            z.writestr(f"{folder}/{name}" if folder else name, content)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/adv_trained.zip"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m challenges.fetch_model ARGS`` without URL overrides from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAA_TF_MODEL_URL_")}
    env.update({"PYTHONPATH": str(REPO_ROOT), "no_proxy": "127.0.0.1,localhost",
                "NO_PROXY": "127.0.0.1,localhost"})
    return subprocess.run([sys.executable, "-m", "challenges.fetch_model", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60)


def test_fetch_function_end_to_end_and_reuse(server, tmp_path):
    base, www = server
    digest = make_zip(www / "adv_trained.zip")
    dest = tmp_path / "models"
    logs = []
    out = fetch_model.fetch("mnist", "adv_trained", dest, url=f"{base}/adv_trained.zip",
                            log=logs.append)
    assert out == dest / "adv_trained"
    for name, content in CKPT_FILES.items():
        assert (out / name).read_bytes() == content
    info = json.loads((out / fetch_model.INFO_FILE).read_text())
    assert info["sha256"] == digest and info["verified"] is False
    assert any("WARNING" in line and digest in line for line in logs)  # digest printed
    assert sorted(p.name for p in dest.iterdir()) == ["adv_trained"]  # no temp files left
    # already there: reused without any download (the URL is unreachable now)
    assert fetch_model.fetch("mnist", "adv_trained", dest, url=closed_port_url(),
                             log=logs.append) == out
    assert "reusing" in logs[-1]


def test_fetch_verified_digest_nested_folder_and_env_url(server, tmp_path, monkeypatch):
    base, www = server
    digest = make_zip(www / "s.zip", folder="models/secret")
    monkeypatch.setenv("DAA_TF_MODEL_URL_CIFAR10_SECRET", f"{base}/s.zip")
    assert fetch_model.model_url("cifar10", "secret") == f"{base}/s.zip"
    out = fetch_model.fetch("cifar10", "secret", tmp_path / "d", sha256=digest.upper(),
                            log=lambda s: None)
    assert (out / "checkpoint-1.index").is_file()
    assert json.loads((out / fetch_model.INFO_FILE).read_text())["verified"] is True


def test_sha_mismatch_leaves_nothing(server, tmp_path):
    base, www = server
    make_zip(www / "adv_trained.zip")
    dest = tmp_path / "models"
    with pytest.raises(FetchError, match="SHA256 mismatch"):
        fetch_model.fetch("mnist", "adv_trained", dest, url=f"{base}/adv_trained.zip",
                          sha256="0" * 64, log=lambda s: None)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("files, folder, message", [
    ({"readme.txt": b"no checkpoint here"}, "x", "holds no TF checkpoint"),
    ({"../evil/checkpoint": b"x"}, "", "refusing zip member"),
])
def test_bad_archives_leave_nothing(server, tmp_path, files, folder, message):
    base, www = server
    make_zip(www / "bad.zip", folder=folder, files=files)
    dest = tmp_path / "models"
    with pytest.raises(FetchError, match=message):
        fetch_model.fetch("mnist", "natural", dest, url=f"{base}/bad.zip", log=lambda s: None)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_not_a_zip(server, tmp_path):
    base, www = server
    (www / "page.zip").write_text("<html>not found</html>")
    with pytest.raises(FetchError, match="not a zip archive"):
        fetch_model.fetch("mnist", "natural", tmp_path / "m", url=f"{base}/page.zip",
                          log=lambda s: None)
    assert list((tmp_path / "m").iterdir()) == []


def test_404_and_closed_port(server, tmp_path):
    base, _ = server
    dest = tmp_path / "models"
    with pytest.raises(FetchError, match="HTTP 404") as err:
        fetch_model.fetch("mnist", "natural", dest, url=f"{base}/missing.zip", log=lambda s: None)
    assert "place the checkpoint folder" in str(err.value)
    with pytest.raises(FetchError, match="Offline\\?.*DAA_TF_MODEL_URL_MNIST_NATURAL"):
        fetch_model.fetch("mnist", "natural", dest, url=closed_port_url(), timeout=5,
                          log=lambda s: None)
    assert list(dest.iterdir()) == []


def test_existing_folder_without_checkpoint_is_not_overwritten(tmp_path):
    (tmp_path / "natural").mkdir()
    (tmp_path / "natural" / "notes.txt").write_text("mine")
    with pytest.raises(FetchError, match="holds no checkpoint"):
        fetch_model.fetch("mnist", "natural", tmp_path, url=closed_port_url(), log=lambda s: None)


def test_names_validated():
    with pytest.raises(ValueError, match="unknown challenge"):
        fetch_model.fetch("imagenet", "natural")
    with pytest.raises(ValueError, match="unknown model"):
        fetch_model.model_url("mnist", "l2")
    assert set(fetch_model.URLS) == set(fetch_model.SHA256)
    assert all(u.startswith("https://") for u in fetch_model.URLS.values())


def test_cache_dir_and_ensure_model(server, tmp_path, monkeypatch):
    base, www = server
    make_zip(www / "natural.zip", folder="natural")
    monkeypatch.setenv("DAA_TF_CACHE", str(tmp_path / "cache"))
    assert fetch_model.default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("DAA_TF_CACHE")
    assert fetch_model.default_cache_dir() == Path.home() / ".cache" / "daa_tf"
    monkeypatch.setenv("DAA_TF_MODEL_URL_MNIST_NATURAL", f"{base}/natural.zip")
    out = fetch_model.ensure_model("mnist", "natural", cache_dir=tmp_path / "cache")
    assert out == tmp_path / "cache" / "mnist" / "natural" and fetch_model.has_checkpoint(out)
    (www / "natural.zip").unlink()  # second call must not download
    assert fetch_model.ensure_model("mnist", "natural", cache_dir=tmp_path / "cache") == out


def test_cli_end_to_end(server, tmp_path):
    base, www = server
    digest = make_zip(www / "adv_trained.zip", folder="adv_trained")
    result = run_cli("--challenge=cifar10", "--model=adv_trained", f"--dest={tmp_path / 'm'}",
                     f"--url={base}/adv_trained.zip", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert digest in result.stdout
    assert (tmp_path / "m" / "adv_trained" / "checkpoint").is_file()


def test_cli_failures_exit_non_zero(server, tmp_path):
    base, _ = server
    result = run_cli("--challenge=mnist", "--model=natural", f"--dest={tmp_path / 'm'}",
                     f"--url={base}/nothing.zip", cwd=tmp_path)
    assert result.returncode != 0
    assert "HTTP 404" in result.stderr and str(tmp_path / "m" / "natural") in result.stderr
    result = run_cli("--challenge=mnist", "--model=natural", f"--dest={tmp_path / 'm'}",
                     f"--url={closed_port_url()}", "--timeout=5", cwd=tmp_path)
    assert result.returncode != 0 and "Offline?" in result.stderr
    result = run_cli("--challenge=svhn", cwd=tmp_path)
    assert result.returncode != 0 and "challenge" in result.stderr


# ------------------------------------------------------------------ the ImageNet model (tar.gz)

MODEL = "ens_adv_inception_resnet_v2"
RELEASE_FILES = {f"{MODEL}.ckpt.index": b"fake index",
                 f"{MODEL}.ckpt.data-00000-of-00001": b"\0" * 64}


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


def test_imagenet_fetch_end_to_end_reuse_and_loader_resolution(tmp_path):
    digest = make_tar(tmp_path / "release.tar.gz")
    dest, logs = tmp_path / "models", []
    out = fetch_model.fetch_imagenet(dest=dest, url=(tmp_path / "release.tar.gz").as_uri(),
                                     log=logs.append)
    assert out == dest / MODEL
    for name, content in RELEASE_FILES.items():
        assert (out / name).read_bytes() == content
    assert not (out / "checkpoint").exists()
    info = json.loads((out / fetch_model.INFO_FILE).read_text())
    assert info == {"challenge": "imagenet", "model": MODEL, "url": info["url"], "sha256": digest,
                    "verified": False}
    assert any("WARNING" in line and digest in line and "IMAGENET_SHA256" in line
               for line in logs)
    assert sorted(p.name for p in dest.iterdir()) == [MODEL]  # no temporary files left
    # the model loader finds the prefix in the folder although there is no state file
    from daa_tf.models.checkpoint import resolve_checkpoint
    assert resolve_checkpoint(out) == str(out / f"{MODEL}.ckpt")
    # reused: no download (the URL is gone)
    (tmp_path / "release.tar.gz").unlink()
    assert fetch_model.fetch_imagenet(dest=dest, url=(tmp_path / "release.tar.gz").as_uri(),
                                      log=logs.append) == out
    assert "reusing" in logs[-1]


def test_imagenet_nested_folder_verified_digest_and_env_url(tmp_path, monkeypatch):
    digest = make_tar(tmp_path / "r.tgz", folder=f"release/{MODEL}")
    monkeypatch.setenv("DAA_TF_MODEL_URL_IMAGENET_ENS_ADV_INCEPTION_RESNET_V2",
                       (tmp_path / "r.tgz").as_uri())
    assert fetch_model.imagenet_model_url() == (tmp_path / "r.tgz").as_uri()
    out = fetch_model.fetch_imagenet(MODEL, tmp_path / "d", sha256=digest.upper(), log=quiet)
    assert (out / f"{MODEL}.ckpt.index").is_file()
    assert json.loads((out / fetch_model.INFO_FILE).read_text())["verified"] is True


def test_ensure_imagenet_model_caches(tmp_path, monkeypatch):
    make_tar(tmp_path / "r.tar.gz")
    monkeypatch.setenv(fetch_model.url_env_var("imagenet", MODEL), (tmp_path / "r.tar.gz").as_uri())
    out = fetch_model.ensure_imagenet_model(cache_dir=tmp_path / "cache")
    assert out == tmp_path / "cache" / "imagenet" / MODEL and fetch_model.has_checkpoint(out)
    (tmp_path / "r.tar.gz").unlink()  # second call must not download
    assert fetch_model.ensure_imagenet_model(MODEL, cache_dir=tmp_path / "cache") == out


def test_imagenet_sha_mismatch_leaves_nothing(tmp_path):
    make_tar(tmp_path / "r.tar.gz")
    with pytest.raises(FetchError, match="SHA256 mismatch"):
        fetch_model.fetch_imagenet(dest=tmp_path / "m", url=(tmp_path / "r.tar.gz").as_uri(),
                                   sha256="0" * 64, log=quiet)
    assert list((tmp_path / "m").iterdir()) == []


@pytest.mark.parametrize("files, links, message", [
    ({"../evil.ckpt.index": b"x"}, (), "refusing tar member '../evil.ckpt.index'"),
    ({"/tmp/abs.ckpt.index": b"x"}, (), "refusing tar member '/tmp/abs.ckpt.index'"),
    (None, [("link.ckpt.index", "/etc/passwd", tarfile.SYMTYPE)], "links and special files"),
    (None, [("hard.ckpt.index", "../x", tarfile.LNKTYPE)], "links and special files"),
    ({"readme.txt": b"no checkpoint"}, (), "the tarball holds no TF checkpoint"),
])
def test_imagenet_bad_tarballs_leave_nothing(tmp_path, files, links, message):
    make_tar(tmp_path / "bad.tar.gz", files=files, links=links)
    dest = tmp_path / "m"
    with pytest.raises(FetchError, match=message):
        fetch_model.fetch_imagenet(dest=dest, url=(tmp_path / "bad.tar.gz").as_uri(), log=quiet)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil.ckpt.index").exists()


@pytest.mark.parametrize("content", [b"<html>not found</html>", None])
def test_imagenet_not_a_tarball_or_truncated(tmp_path, content):
    path = tmp_path / "r.tar.gz"
    if content is None:  # a download cut short
        make_tar(path, files={f"{MODEL}.ckpt.data-00000-of-00001": os.urandom(200_000)})
        content = path.read_bytes()[:50_000]
    path.write_bytes(content)
    with pytest.raises(FetchError, match=r"not a \(complete\) tar archive"):
        fetch_model.fetch_imagenet(dest=tmp_path / "m", url=path.as_uri(), log=quiet)
    assert list((tmp_path / "m").iterdir()) == []


def test_imagenet_unreachable_url_says_how_to_place_the_files(tmp_path):
    with pytest.raises(FetchError, match=r"could not download .*Offline\?.*tar xzf.*"
                                         "DAA_TF_MODEL_URL_IMAGENET_ENS_ADV_INCEPTION_RESNET_V2"):
        fetch_model.fetch_imagenet(dest=tmp_path / "m", url=(tmp_path / "none.tgz").as_uri(),
                                   log=quiet)


def test_imagenet_tables_and_names():
    assert fetch_model.IMAGENET_URLS[MODEL] == ("http://download.tensorflow.org/models/"
                                                "ens_adv_inception_resnet_v2_2017_08_18.tar.gz")
    assert fetch_model.imagenet_model_url(MODEL) == fetch_model.IMAGENET_URLS[MODEL]
    assert set(fetch_model.IMAGENET_SHA256) == set(fetch_model.IMAGENET_URLS)
    assert "imagenet" not in fetch_model.CHALLENGES  # MadryLab's tables are unchanged
    with pytest.raises(ValueError, match="unknown ImageNet model 'adv_trained'"):
        fetch_model.fetch_imagenet("adv_trained")


def test_imagenet_cli(tmp_path):
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
