"""Apache Kafka from Maven Central: resolved once by Maven into a cached folder.

Why Maven and not the tarball: Maven Central is reachable where the Apache
download mirrors may not be, and a POM pins exactly what runs. The POM in
``infra/kafka/pom.xml`` is the single source of the version; the cache is keyed
by its hash, so a second run downloads nothing and a version bump refetches.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from clearing_core.errors import ClearingError

KAFKA_VERSION = "4.3.1"
JAVA_MAJOR_MIN = 17
FETCH_SECONDS_MAX = 900
JAVA_VERSION_SECONDS_MAX = 30
_STAMP = ".complete"


class BrokerUnavailableError(ClearingError):
    """The local broker cannot be fetched, started or reached."""

    reason_code = "BROKER_UNAVAILABLE"
    exit_code = 4


HOW_TO_GET_JAVA = (
    "the local broker needs Java 17+ and Maven "
    "(Debian: apt-get install openjdk-17-jre-headless maven); "
    "or point KAFKA_BOOTSTRAP at a running broker, "
    "or use Docker with infra/docker-compose.yml"
)


def java_major(java: str = "java") -> int:
    """Major version of the ``java`` on PATH; raises with set-up advice when absent."""
    exe = shutil.which(java)
    if exe is None:
        raise BrokerUnavailableError(f"java not found: {HOW_TO_GET_JAVA}")
    out = subprocess.run(
        [exe, "-version"],
        capture_output=True,
        text=True,
        timeout=JAVA_VERSION_SECONDS_MAX,
        check=False,
    ).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise BrokerUnavailableError(f"cannot read the Java version from: {out.strip()[:120]}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


@dataclass(frozen=True)
class KafkaDistribution:
    """The broker's jars in ``<cache>/kafka/<pom hash>/libs``."""

    pom: Path
    cache_dir: Path

    @property
    def key(self) -> str:
        return hashlib.sha256(self.pom.read_bytes()).hexdigest()[:16]

    @property
    def libs_dir(self) -> Path:
        return self.cache_dir / "kafka" / f"{KAFKA_VERSION}-{self.key}" / "libs"

    @property
    def classpath(self) -> str:
        return str(self.libs_dir / "*")

    def is_fetched(self) -> bool:
        return (self.libs_dir / _STAMP).is_file()

    def ensure(self, quiet: bool = True) -> Path:
        """Fetch the jars unless the cache already has them; return the libs folder."""
        if self.is_fetched():
            return self.libs_dir
        if java_major() < JAVA_MAJOR_MIN:
            raise BrokerUnavailableError(f"Java {JAVA_MAJOR_MIN}+ is required: {HOW_TO_GET_JAVA}")
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerUnavailableError(f"mvn not found: {HOW_TO_GET_JAVA}")
        staging = self.libs_dir.with_name("libs.partial")
        shutil.rmtree(staging, ignore_errors=True)
        command = [
            mvn, "-B", "-f", str(self.pom), "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
        ]  # fmt: skip
        if quiet:
            command.insert(1, "-q")
        try:
            done = subprocess.run(
                command, capture_output=quiet, text=True, timeout=FETCH_SECONDS_MAX, check=False
            )
        except subprocess.TimeoutExpired:
            raise BrokerUnavailableError(
                f"Maven did not fetch Kafka within {FETCH_SECONDS_MAX} s"
            ) from None
        if done.returncode != 0:
            tail = (done.stdout or "").strip().splitlines()[-3:] if quiet else []
            raise BrokerUnavailableError(
                "Maven could not fetch Kafka " + KAFKA_VERSION + ": " + " | ".join(tail)
            )
        jars = sorted(p.name for p in staging.glob("*.jar"))
        if not any(j.startswith("kafka_2.13-") for j in jars):
            raise BrokerUnavailableError(f"Maven fetched no kafka_2.13 jar into {staging}")
        (staging / _STAMP).write_text("\n".join(jars) + "\n")
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        staging.rename(self.libs_dir)
        return self.libs_dir
