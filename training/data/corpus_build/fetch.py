"""Fetching the pinned sources through the Debian archive only, into a resumable cache outside the repository.

A `.deb` is fetched with `apt-get download PACKAGE=VERSION` and unpacked with `dpkg-deb -x` (nothing is installed);
the English package descriptions come from the archive's `Translation-en` index (`apt-get update` with English
descriptions enabled). Every file is checked against the sha256 recorded in the pins, so a build either uses exactly
the pinned inputs or stops.
"""

import hashlib
import os
import subprocess
import sys
import zlib
from pathlib import Path

from nomic_bert_hf.utils.files import atomic_output_dir, sha256_file

APT_LISTS = Path("/var/lib/apt/lists")


class PinError(RuntimeError):
    """The archive or the machine no longer provides what the pins name: rebuilding would drift."""


def _run(command: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result.stdout


def apt_update() -> None:
    """Refresh the package lists with English descriptions (the Debian image turns them off); needs root."""
    if os.geteuid() != 0:
        raise PermissionError("apt-get update needs root: run the builder with sudo, or pass --apt_update false")
    _run(["apt-get", "update", "-o", "Acquire::Languages=en"])


def archive_versions(package: str) -> list[tuple[str, str]]:
    """(version, archive line) for every version of `package` the package lists offer (`apt-cache madison`)."""
    rows = []
    for line in _run(["apt-cache", "madison", package]).splitlines():
        parts = [part.strip() for part in line.split("|")]
        if len(parts) == 3 and parts[0] == package:
            rows.append((parts[1], parts[2]))
    return rows


def resolve_version(package: str) -> str:
    """The version to pin: the one in the release's main suite (point-release archives keep it), else the newest."""
    rows = archive_versions(package)
    if not rows:
        raise PinError(f"the package lists offer no {package}; run apt-get update")
    updates = ("-security", "-updates", "-backports")
    stable = [version for version, where in rows if not any(suite in where for suite in updates)]
    return (stable or [rows[0][0]])[0]


def archive_sha256(package: str, version: str) -> str:
    """The SHA256 of PACKAGE=VERSION's .deb as the signed package index states it."""
    for line in _run(["apt-cache", "show", "--no-all-versions", f"{package}={version}"]).splitlines():
        if line.startswith("SHA256: "):
            return line.split()[1]
    raise PinError(f"apt-cache show {package}={version} states no SHA256")


def fetch_deb(package: str, version: str, sha256: str | None, cache: Path) -> Path:
    """The unpacked tree of PACKAGE=VERSION, downloaded and unpacked once (cached); the .deb must match `sha256`
    when one is pinned."""
    target = cache / "unpacked" / f"{package}_{version.replace(':', '%3a')}"
    marker = target / ".complete"  # holds the sha256 of the .deb it was unpacked from
    if marker.is_file() and sha256 in (None, marker.read_text()):
        return target
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    pattern = f"{package}_{version.replace(':', '%3a')}_*.deb"  # apt-get's file name quotes the epoch colon
    deb = next(debs.glob(pattern), None)
    if deb is None:
        try:
            _run(["apt-get", "download", "-o", "APT::Sandbox::User=root", f"{package}={version}"], cwd=debs)
        except RuntimeError as error:
            raise PinError(
                f"cannot download pinned {package}={version} ({error}); the archive no longer has it: pass "
                "--repin true to pin what the archive has now (the output will change)"
            ) from error
        deb = next(debs.glob(pattern))
    if sha256 is not None and sha256_file(deb) != sha256:
        raise PinError(f"{deb.name}: sha256 {sha256_file(deb)} differs from the pinned {sha256}")
    with atomic_output_dir(target, overwrite=True) as staging:
        _run(["dpkg-deb", "-x", str(deb), str(staging)])
        (staging / ".complete").write_text(sha256_file(deb))
    return target


def translation_index(suite_list_prefix: str) -> Path:
    """The apt list file of the English descriptions for a suite, e.g. prefix
    'deb.debian.org_debian_dists_bookworm_main' -> '..._main_i18n_Translation-en' (possibly compressed)."""
    found = sorted(APT_LISTS.glob(f"{suite_list_prefix}_i18n_Translation-en*"))
    if not found:
        raise PinError(f"no {suite_list_prefix}_i18n_Translation-en in {APT_LISTS}: run apt-get update with "
                       "Acquire::Languages=en (the builder does so unless --apt_update false)")
    return found[0]


def fetch_translation(suite_list_prefix: str, sha256: str | None, cache: Path) -> Path:
    """The uncompressed Translation-en of the suite, copied into the cache; it must match `sha256` when pinned."""
    if sha256 is not None:
        cached = cache / "translations" / f"Translation-en.{sha256}"
        if cached.is_file() and sha256_file(cached) == sha256:
            return cached
    data = _run_bytes(["/usr/lib/apt/apt-helper", "cat-file", str(translation_index(suite_list_prefix))])
    actual = hashlib.sha256(data).hexdigest()
    if sha256 is not None and actual != sha256:
        raise PinError(
            f"the archive's current Translation-en ({actual}) differs from the pinned one ({sha256}): a Debian point "
            "release changed it; pass --repin true to pin the new one (the output will change)"
        )
    cached = cache / "translations" / f"Translation-en.{actual}"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    return cached


def _run_bytes(command: list[str]) -> bytes:
    result = subprocess.run(command, capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed: {result.stderr.decode(errors='replace')[-2000:]}")
    return result.stdout


def tool_versions() -> dict[str, str]:
    """The programs whose behaviour shapes the output bytes: groff renders man pages, Python parses HTML and writes
    JSON, zlib compresses the shards."""
    groff = _run(["dpkg-query", "-W", "-f=${Version}", "groff-base"]).strip()
    return {"groff-base": groff, "python": "{}.{}".format(*sys.version_info[:2]), "zlib": zlib.ZLIB_RUNTIME_VERSION}
