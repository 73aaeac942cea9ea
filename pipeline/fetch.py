"""Fetch published files (datasets, teacher weights) into a local cache, as torchvision, timm and diffusers do.

Downloads go to `NAME.part` beside the destination and are renamed into place only once complete and verified,
so a file under its final name is always whole. Rerunning after an interruption resumes the `.part` with an
HTTP Range request.

Environment:
  DRA_HOME      cache root (default ~/.cache/dra-pipeline); teacher weights go under $DRA_HOME/checkpoints
  DRA_OFFLINE   1, true or yes: never touch the network; a missing file is an error naming where to put it
  DRA_MIRROR    base URL of a mirror or caching proxy that serves the same paths as the original hosts, e.g.
                http://127.0.0.1:8123: every download from https://host/a/b.tar.gz then reads
                http://127.0.0.1:8123/a/b.tar.gz (a mirror given with a path, http://m/dra, reads http://m/dra/a/b.tar.gz)
  TQDM_DISABLE  any non-empty value hides the progress bar (as it does for tqdm itself)

Files in Hugging Face repos (diffusers, LightningDiT and timm weights) go through huggingface_hub's own cache and
download (`hub_file`): HF_HOME / HF_HUB_CACHE choose the cache, and HF_HUB_OFFLINE=1 (or DRA_OFFLINE=1) reads the
cache only, both read when the file is asked for.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit, urlunsplit

from tqdm import tqdm

from dra_pipeline.errors import FetchError
from dra_pipeline.hashing import file_digest
from dra_pipeline.logs import bars_disabled
from dra_pipeline.version import __version__

TIMEOUT_S = 60.0  # socket timeout for connecting and for each read; a stalled server counts as a dropped connection
RETRIES = 3  # further attempts after a connection drops mid-body, each resuming from the .part
RETRY_WAIT_S = 1.0  # pause before retry k is k times this, to let a briefly overloaded server recover
CHUNK_BYTES = 1 << 16  # read size; the progress bar advances once per chunk
EDM_URL = "https://nvlabs-fi-cdn.nvidia.com/edm/pretrained"
HF_URL = "https://huggingface.co"  # the hub's default endpoint ($HF_ENDPOINT replaces it, as in huggingface_hub)
_USER_AGENT = f"dra-pipeline/{__version__}"  # some CDNs reject urllib's default agent
_TRUE = {"1", "true", "yes"}


@dataclass(frozen=True)
class Remote:
    """A published file: where it lives and, when its publisher gives them, its digests and size (bytes)."""

    url: str
    filename: str  # name it is saved under; a plain file name, never a path
    md5: str | None = None  # hex digest
    sha256: str | None = None  # hex digest
    size: int | None = None  # bytes

    def __post_init__(self):
        if not self.filename or self.filename in {".", ".."} or "/" in self.filename or "\\" in self.filename:
            raise FetchError(f"{self.url}: file name {self.filename!r} must be a plain name, not a path")


CIFAR10 = Remote(
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    size=170498071,
)
CIFAR100 = Remote(
    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    "cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    size=169001437,
)


def edm_remote(name: str) -> Remote:
    """An official EDM checkpoint, e.g. `edm_remote("edm-cifar10-32x32-cond-vp")`. NVIDIA publishes no digests."""
    return Remote(f"{EDM_URL}/{name}.pkl", f"{name}.pkl")


def home() -> Path:
    """The cache root: $DRA_HOME, default ~/.cache/dra-pipeline."""
    return Path(os.environ.get("DRA_HOME") or "~/.cache/dra-pipeline").expanduser()


def checkpoints_dir() -> Path:
    """Where downloaded teacher weights are kept: home()/checkpoints."""
    return home() / "checkpoints"


def offline() -> bool:
    """True when $DRA_OFFLINE is 1, true or yes (any case)."""
    return os.environ.get("DRA_OFFLINE", "").strip().lower() in _TRUE


def resolve_url(url: str) -> str:
    """`url` with its scheme and host:port replaced by $DRA_MIRROR's (path and query kept); `url` when unset."""
    mirror = os.environ.get("DRA_MIRROR", "").strip()
    if not mirror:
        return url
    m = urlsplit(mirror)
    if m.scheme not in {"http", "https"} or not m.netloc:
        raise FetchError(f"DRA_MIRROR={mirror!r} is not a base URL such as http://127.0.0.1:8123")
    u = urlsplit(url)
    return urlunsplit((m.scheme, m.netloc, m.path.rstrip("/") + u.path, u.query, ""))


# ---------------------------------------------------------------------------------------------------------------------
# download


class _Dropped(Exception):
    """The connection ended before the body did; the bytes so far are in the .part and a retry resumes."""


def _mismatch(remote: Remote, path: Path) -> str | None:
    """None when `path` matches every size and digest `remote` publishes, else a phrase naming expected and actual."""
    if remote.size is not None and (actual := path.stat().st_size) != remote.size:
        return f"size {actual} bytes, expected {remote.size}"
    for algorithm, expected in (("sha256", remote.sha256), ("md5", remote.md5)):
        if expected is not None and (actual := file_digest(path, algorithm)) != expected.lower():
            return f"{algorithm} {actual}, expected {expected.lower()}"
    return None


def _where(url: str, remote: Remote) -> str:
    return url if url == remote.url else f"{url} (mirror of {remote.url})"


def _content_range_start(value: str | None) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(?:\d+|\*)\s*", value or "")
    return int(match.group(1)) if match else None


def _attempt(url: str, remote: Remote, part: Path, bar: tqdm) -> None:
    """One request: resume `part` from its current size, or start it over when the server ignores the Range."""
    have = part.stat().st_size if part.exists() else 0
    # identity: byte offsets in Range and Content-Length must count the file's own bytes, not a compressed stream's
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and have:
            # nothing left after byte `have`: an earlier run received the whole body and stopped before the rename.
            # A .part longer than the file (Content-Range: bytes */SIZE) is junk, so start over; otherwise the
            # caller's size and digest check decides whether the .part really is the file
            total = re.fullmatch(r"\s*bytes\s+\*/(\d+)\s*", e.headers.get("Content-Range") or "")
            if total and int(total.group(1)) != have:
                part.unlink()
                raise _Dropped(f"{part} has {have} bytes, the file {total.group(1)}") from None
            return
        raise FetchError(f"HTTP {e.code} {e.reason}: {_where(url, remote)}") from None
    except urllib.error.URLError as e:
        raise FetchError(f"cannot reach {_where(url, remote)}: {e.reason}") from None
    except (http.client.HTTPException, OSError) as e:
        # the server accepted the connection but closed it or stalled before answering
        raise _Dropped(f"no response ({type(e).__name__}: {e})") from None
    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != have:
                # bytes from elsewhere in the file cannot be appended; drop the .part and let the retry start over
                part.unlink()
                raise _Dropped(f"asked for bytes {have}- and got {response.headers.get('Content-Range')!r}")
            mode = "ab"
        else:
            have, mode = 0, "wb"  # 200 to a Range request: the server sends the whole file, so start over
        bar.reset(total=have + length if length is not None else remote.size)
        bar.update(have)
        got = 0
        with open(part, mode) as f:
            try:
                while chunk := response.read(CHUNK_BYTES):
                    f.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
            except (http.client.HTTPException, OSError) as e:  # IncompleteRead, ConnectionResetError, timeout
                raise _Dropped(f"{type(e).__name__} after {have + got} bytes") from None
    # http.client returns a short body without complaint when the server closes early; Content-Length tells
    if length is not None and got < length:
        raise _Dropped(f"connection closed after {have + got} of {have + length} bytes")


def download(remote: Remote, dest: str | os.PathLike, *, quiet: bool = False) -> Path:
    """Download `remote` to `dest` (parents created) and return `dest`; an existing `dest` is verified and kept.

    Resumes `dest.part` left by an interrupted run and retries a dropped connection RETRIES times. A downloaded
    file whose size or digest differs from the published one is removed; an existing `dest` that differs is an
    error and is left alone, since the user may have put it there.
    """
    dest = Path(dest).expanduser().absolute()
    if dest.exists():
        if (why := _mismatch(remote, dest)) is not None:
            raise FetchError(f"{dest} is not {remote.url} ({why}); delete it to download it again")
        return dest
    if offline():
        raise FetchError(
            f"DRA_OFFLINE={os.environ['DRA_OFFLINE']}: cannot download {remote.url} ; "
            f"put the file at {dest} (or unset DRA_OFFLINE)"
        )
    url = resolve_url(remote.url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    disable = quiet or bars_disabled()  # TQDM_DISABLE read now: tqdm reads it once, at import
    with tqdm(
        desc=remote.filename, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, disable=disable
    ) as bar:
        for attempt in range(RETRIES + 1):
            try:
                _attempt(url, remote, part, bar)
                break
            except _Dropped as e:
                reason = e
                if attempt < RETRIES:
                    time.sleep(RETRY_WAIT_S * (attempt + 1))
        else:
            kept = part.stat().st_size if part.exists() else 0
            raise FetchError(
                f"download of {_where(url, remote)} failed {RETRIES + 1} times ({reason}); the partial file {part} "
                f"({kept} bytes) is kept and rerunning resumes it"
            )
    if (why := _mismatch(remote, part)) is not None:
        part.unlink()
        raise FetchError(f"{_where(url, remote)}: downloaded file has {why}; removed {part}")
    fd = os.open(part, os.O_RDONLY)
    try:
        os.fsync(fd)  # the bytes reach the disk before the name says the file is complete
    finally:
        os.close(fd)
    os.replace(part, dest)
    return dest


# ---------------------------------------------------------------------------------------------------------------------
# archives


def _refusal(member: tarfile.TarInfo, expect: str) -> str | None:
    """Why `member` may not be unpacked (None when it is a plain file or folder under `expect/`)."""
    name = member.name
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "absolute path"
    parts = PurePosixPath(name).parts  # drops "." components and repeated slashes
    if ".." in parts:
        return "'..' in its path"
    if not parts or parts[0] != expect:
        return f"outside {expect}/"
    if member.issym() or member.islnk():
        return f"link to {member.linkname!r}"
    if not (member.isfile() or member.isdir()):
        return "device, fifo or other special file"
    if len(parts) == 1 and not member.isdir():
        return f"{expect} must be a folder"
    return None


def unpack_tar(archive: str | os.PathLike, into: str | os.PathLike, *, expect: str) -> Path:
    """Unpack a tar archive (any compression) whose members all lie under `expect/` to `into/expect`; return it.

    Every member is checked before any byte is written: absolute paths, '..', members outside `expect/`, links and
    special files are refused. Unpacking happens in a temporary folder inside `into`, renamed to `into/expect` only
    when complete; an existing `into/expect` is returned as is.
    """
    archive, into = Path(archive), Path(into)
    final = into / expect
    if final.exists():
        return final
    into.mkdir(parents=True, exist_ok=True)
    # a sibling of the final folder, so the rename stays on one filesystem and is atomic
    staging = Path(tempfile.mkdtemp(prefix=f".{expect}.", suffix=".unpacking", dir=into))
    try:
        try:
            with tarfile.open(archive) as tar:
                members = tar.getmembers()
                for member in members:
                    if (why := _refusal(member, expect)) is not None:
                        raise FetchError(f"{archive}: refusing member {member.name!r}: {why}")
                # the "data" filter (Python 3.11.4+, 3.10.12+) re-checks paths and strips modes as a second guard
                guard = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(staging, members=members, **guard)
        except (tarfile.TarError, EOFError) as e:  # includes the data filter's refusals
            raise FetchError(f"{archive}: cannot unpack ({type(e).__name__}: {e}); delete it and retry") from None
        except OSError as e:  # e.g. disk full; the archive itself may be fine
            raise FetchError(f"{archive}: cannot unpack into {into} ({type(e).__name__}: {e})") from None
        if not (staging / expect).is_dir():
            raise FetchError(f"{archive}: holds no {expect}/ folder")
        os.rename(staging / expect, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # our own temporary folder, never a user's
    return final


def fetch_archive(remote: Remote, into: str | os.PathLike, *, expect: str, quiet: bool = False) -> Path:
    """`into/expect`, downloading and unpacking `remote` (a tar archive holding `expect/`) first if it is absent.

    The archive is saved as `into/<remote.filename>`, verified, unpacked and then removed.
    """
    into = Path(into).expanduser().absolute()
    final = into / expect
    if final.is_dir():
        return final
    archive = download(remote, into / remote.filename, quiet=quiet)
    unpack_tar(archive, into, expect=expect)
    archive.unlink()
    return final


# ---------------------------------------------------------------------------------------------------------------------
# Hugging Face hub files


def _flag(name: str) -> str | None:
    """`NAME=value` when the environment variable `name` is 1, true or yes (any case), else None."""
    value = os.environ.get(name, "")
    return f"{name}={value}" if value.strip().lower() in _TRUE else None


def hub_cache() -> Path:
    """The Hugging Face hub cache as the environment names it now: $HF_HUB_CACHE, else $HF_HOME/hub, else
    huggingface_hub's default (~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_url(repo_id: str, filename: str) -> str:
    """Where the hub serves `filename` of the model repo `repo_id` (main branch)."""
    endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or HF_URL
    return f"{endpoint}/{repo_id}/resolve/main/{filename}"


@contextmanager
def _hub_bars():
    """huggingface_hub's bars hidden while `bars_disabled()` (it passes its own `disable=`, overriding TQDM_DISABLE)."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    hide = bars_disabled() and not are_progress_bars_disabled()
    if hide:
        disable_progress_bars()
    try:
        yield
    finally:
        if hide:
            enable_progress_bars()


def hub_file(repo_id: str, *filenames: str, instead: str = "") -> Path:
    """The first of `filenames` that the Hugging Face model repo `repo_id` holds, as a path in the hub cache.

    huggingface_hub downloads it into its cache when absent (with its own progress bar, resume and checks).
    Offline ($DRA_OFFLINE or $HF_HUB_OFFLINE is 1, true or yes) only the cache is read, and a file missing there is
    an error naming its URL, the cache, and `instead` (what else the user can do, e.g. "pass --checkpoint DIR").
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    if not filenames:
        raise ValueError("hub_file needs at least one file name")
    flags = [flag for flag in (_flag("DRA_OFFLINE"), _flag("HF_HUB_OFFLINE")) if flag]
    why = " and ".join(flags) or None
    cache = hub_cache()
    wanted = hub_url(repo_id, filenames[0]) + "".join(f" (or {name})" for name in filenames[1:])
    unreachable = None
    for name in filenames:
        try:
            with _hub_bars():
                return Path(hf_hub_download(repo_id, name, cache_dir=cache, local_files_only=why is not None))
        except RepositoryNotFoundError:
            raise FetchError(
                f"{repo_id}: no such Hugging Face repo, or a gated or private one (log in with `hf auth login`)"
                + (f"; {instead}" if instead else "")
            ) from None
        except LocalEntryNotFoundError as e:  # offline, or online but the hub could not be reached
            unreachable = e
        except EntryNotFoundError:  # the hub answered: the repo has no such file
            pass
        except HfHubHTTPError as e:
            raise FetchError(f"{hub_url(repo_id, name)}: {str(e).splitlines()[0]}") from None
    if why is not None:
        names = " and ".join(flag.split("=")[0] for flag in flags)
        raise FetchError(
            f"{why}: cannot download {wanted} ; it is not in the Hugging Face cache {cache}; unset {names} to "
            "download it" + (f", {instead}" if instead else "")
        )
    if unreachable is not None:
        reason = str(unreachable).splitlines()[0] if str(unreachable) else type(unreachable).__name__
        raise FetchError(f"cannot download {wanted} and it is not in the Hugging Face cache {cache} ({reason})")
    raise FetchError(f"{repo_id} has no {' or '.join(filenames)} ({hub_url(repo_id, filenames[0])})")
