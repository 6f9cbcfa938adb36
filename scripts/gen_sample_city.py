"""Generate the shipped sample city (shaped like the seed's: 8/118/998 grids, 26 key, ~2,000 workers).

Deterministic: the same output every run. Usage: python scripts/gen_sample_city.py OUT.json
"""

from __future__ import annotations

import json
import random
import sys

DISTRICTS = [
    ("Tianshan", 14),
    ("Shayibake", 16),
    ("Xinshi", 17),
    ("Shuimogou", 13),
    ("Toutunhe", 12),
    ("Dabancheng", 10),
    ("Midong", 20),
    ("Urumqi County", 16),
]  # level-2 grids per district: 118 in all
LEVEL3_TOTAL = 998
KEY_GRIDS = 26
STATIONS = 48


def main(out: str) -> None:
    rng = random.Random(20240204)
    grids: list[dict[str, object]] = []
    workers: list[dict[str, object]] = []
    level2: list[str] = []
    for d, (name, n2) in enumerate(DISTRICTS, start=1):
        g1 = f"L1-{d:02d}"
        grids.append({"id": g1, "name": name, "level": 1})
        workers.append({"id": f"W-{g1}", "name": f"{name} supervisor", "grid": g1, "role": "reviewer"})
        for s in range(1, n2 + 1):
            g2 = f"L2-{d:02d}{s:02d}"
            level2.append(g2)
            grids.append({"id": g2, "name": f"{name} street {s}", "level": 2, "parent": g1})
            workers.append(
                {
                    "id": f"W-{g2}",
                    "name": f"{name} street {s} station chief",
                    "grid": g2,
                    "role": "reviewer",
                }
            )
    # spread 998 level-3 grids over the 118 level-2 grids: 8 or 9 each
    per = [LEVEL3_TOTAL // len(level2)] * len(level2)
    for i in range(LEVEL3_TOTAL - sum(per)):
        per[i] += 1
    level3: list[str] = []
    for g2, n3 in zip(level2, per, strict=True):
        for c in range(1, n3 + 1):
            g3 = f"L3-{g2[3:]}{c:02d}"
            level3.append(g3)
            grids.append({"id": g3, "name": f"community {g2[3:]}-{c}", "level": 3, "parent": g2})
    keys = set(rng.sample(level3, KEY_GRIDS))
    for g in grids:
        if g["id"] in keys:
            g["key"] = True
    # one worker per level-3 grid, a second in seven of eight: about 2,000 people in all
    for g3 in level3:
        n = 2 if rng.random() < 0.88 else 1
        for w in range(1, n + 1):
            workers.append({"id": f"W-{g3}-{w}", "name": f"worker {g3[3:]}-{w}", "grid": g3})
    stations = []
    chosen = sorted(rng.sample(level3, STATIONS - 4)) + sorted(keys)[:4]
    for i, g3 in enumerate(chosen, start=1):
        stations.append(
            {
                "id": f"ST{i:03d}",
                "name": f"station {i}",
                "lon": round(87.4 + rng.random() * 0.5, 5),
                "lat": round(43.6 + rng.random() * 0.4, 5),
                "grid": g3,
            }
        )
    doc = {
        "schema_version": 1,
        "city": "Sample City (shaped like Urumqi, 2023)",
        "grids": grids,
        "workers": workers,
        "stations": stations,
    }
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False, indent=0)
        fh.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
