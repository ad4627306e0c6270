"""Print pip constraints pinning every dependency of pyproject.toml (and the dev extra) to its
lower bound, so CI can prove the lower bounds we declare are ones we actually test."""

import re
import tomllib
from pathlib import Path

project = tomllib.loads(Path(__file__).resolve().parent.parent.joinpath("pyproject.toml").read_text())["project"]
for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
    spec, _, marker = requirement.partition(";")
    match = re.match(r"\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([^,\s]+)", spec)
    if match:
        print(f"{match.group(1)}=={match.group(2)}" + (f"; {marker.strip()}" if marker else ""))
