"""Fetch Beam's Flink and Spark job servers from Maven Central into a cache directory, checksums verified.

Why this shape: the shaded ``beam-runners-<engine>-job-server`` jars that Beam's Python runners download at
run time are not served by Maven Central here (for any version), and a scan never downloads anything. Each
job server is therefore assembled the ordinary Maven way from its non-shaded artifacts (``<name>.pom.xml``
beside this file, versions pinned): Maven resolves and copies the runner and its dependencies into
``CACHE/<name>/lib`` (``--strict-checksums``: every file is checked against Central's checksum as it
arrives), every jar is then checked against the sha256 list committed beside the pom (``<name>.sha256``:
the exact set of files, so a changed, missing or extra jar fails), and a jar holding only a manifest
(``Main-Class``: Beam's job server driver, ``Class-Path``: ``lib/*.jar``) is written as
``CACHE/<name>/<name>-<version>.jar``. That jar is what ``--flink_job_server_jar`` /
``--spark_job_server_jar`` take: Beam starts it with ``java -jar`` as it starts its own.

    python pipelines/runners/jobserver/fetch.py [--cache DIR] [--only NAME] [--write-lock]

Prints the path of each job server jar. ``--write-lock`` records the sha256 list after a deliberate version
change (review the diff).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
DEFAULT_CACHE = ROOT / ".cache" / "jobservers"

# name -> (job server driver, JVM packages the engine reflects into on Java 17, granted by the manifest)
SERVERS = {
    "flink-1.19": ("org.apache.beam.runners.flink.FlinkJobServerDriver", ()),
    "spark-3": ("org.apache.beam.runners.spark.SparkJobServerDriver",
                # Spark 3.2's own launcher list (JavaModuleOptions) for Java 17
                ("java.base/java.lang", "java.base/java.lang.invoke", "java.base/java.lang.reflect",
                 "java.base/java.io", "java.base/java.net", "java.base/java.nio", "java.base/java.util",
                 "java.base/java.util.concurrent", "java.base/java.util.concurrent.atomic",
                 "java.base/sun.nio.ch", "java.base/sun.nio.cs", "java.base/sun.security.action",
                 "java.base/sun.util.calendar")),
}


def pom(name: str) -> pathlib.Path:
    return HERE / f"{name}.pom.xml"


def version(name: str) -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    return ET.parse(pom(name)).getroot().find("m:version", ns).text


def jar_path(name: str, cache: pathlib.Path = DEFAULT_CACHE) -> pathlib.Path:
    """Where the job server jar for ``name`` lives once fetched (it may not exist yet)."""
    return cache / name / f"beam-runners-{name}-job-server-{version(name)}.jar"


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(main_class: str, jars: list, opens: tuple) -> bytes:
    """A MANIFEST.MF with lines wrapped at 72 bytes, as the JAR specification requires."""
    attrs = [("Manifest-Version", "1.0"), ("Main-Class", main_class),
             ("Class-Path", " ".join(f"lib/{j}" for j in jars))]
    if opens:
        attrs.append(("Add-Opens", " ".join(opens)))
    out = bytearray()
    for key, value in attrs:
        line = f"{key}: {value}".encode("utf-8")
        out += line[:72] + b"\r\n"
        for i in range(72, len(line), 71):
            out += b" " + line[i:i + 71] + b"\r\n"
    return bytes(out + b"\r\n")


def _lock(name: str) -> dict:
    lock = HERE / f"{name}.sha256"
    return {j.strip(): h for h, j in (line.split(None, 1) for line in lock.read_text().splitlines() if line.strip())}


def _mismatch(lib: pathlib.Path, want: dict) -> list:
    """Jars that are missing, extra or changed against the lock (empty: ``lib`` is exactly the pinned set)."""
    got = {p.name: _sha256(p) for p in lib.iterdir() if p.suffix == ".jar"} if lib.is_dir() else {}
    return sorted(set(got) ^ set(want)) + sorted(j for j in set(got) & set(want) if got[j] != want[j])


def fetch(name: str, cache: pathlib.Path, write_lock: bool = False) -> pathlib.Path:
    main_class, opens = SERVERS[name]
    cache = cache.resolve()  # Maven resolves a relative outputDirectory against the pom's folder, not the cwd
    lib = cache / name / "lib"
    out = jar_path(name, cache)
    if not write_lock and out.is_file() and not _mismatch(lib, _lock(name)):
        return out  # already fetched and still exactly the pinned jars
    if lib.exists():
        shutil.rmtree(lib)
    lib.mkdir(parents=True)
    subprocess.run(["mvn", "-q", "-B", "--strict-checksums", "-f", str(pom(name)), "dependency:copy-dependencies",
                    f"-DoutputDirectory={lib}", "-DincludeScope=runtime"], check=True)
    jars = sorted(p.name for p in lib.iterdir() if p.suffix == ".jar")
    lock = HERE / f"{name}.sha256"
    if write_lock:
        lock.write_text("".join(f"{_sha256(lib / j)}  {j}\n" for j in jars))
    bad = _mismatch(lib, _lock(name))
    if bad:
        shutil.rmtree(lib)
        raise SystemExit(f"{name}: jars differ from {lock.relative_to(ROOT)}: {', '.join(bad[:10])}")
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        info = zipfile.ZipInfo("META-INF/MANIFEST.MF", date_time=(1980, 1, 1, 0, 0, 0))
        zf.writestr(info, _manifest(main_class, jars, opens))
    os.replace(tmp, out)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=pathlib.Path, default=DEFAULT_CACHE)
    parser.add_argument("--only", choices=sorted(SERVERS))
    parser.add_argument("--write-lock", action="store_true")
    args = parser.parse_args(argv)
    for name in [args.only] if args.only else sorted(SERVERS):
        print(fetch(name, args.cache, args.write_lock))
    return 0


if __name__ == "__main__":
    sys.exit(main())
