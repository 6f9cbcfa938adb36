"""Generate the shipped sample city (shaped like the seed's: 8/118/998 grids, 26 key, ~2,000 workers).

Level-3 grids are the cells of a 40 x 25 lattice over the city's box (about 1.0 x 1.8 km each),
laid out in serpentine order so each level-2 and level-1 grid is one contiguous area; their
boundaries go to a GeoJSON file beside the directory. Odd-numbered stations name their grid
explicitly; even-numbered ones are located by point-in-polygon. Every station has the HJ 212 code
(MN) and access password (PW) its data acquisition unit sends to ``airgrid gateway``: the MN is the
city's division code (650100), the system code of ambient air (22), "A" and the station number.

Deterministic: the same output every run.
Usage: python scripts/gen_sample_city.py OUT.json   (writes OUT.json and grids-l3.geojson beside it)
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

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
BOX = (87.4, 43.6, 87.9, 44.0)  # lon/lat of the city's corners
COLUMNS, ROWS = 40, 25  # 1,000 cells for 998 level-3 grids
BOUNDARIES = "grids-l3.geojson"


def cell(k: int) -> tuple[float, float, float, float]:
    """Corners (lon0, lat0, lon1, lat1) of lattice cell ``k`` in serpentine order."""
    row, col = divmod(k, COLUMNS)
    if row % 2:
        col = COLUMNS - 1 - col
    dx, dy = (BOX[2] - BOX[0]) / COLUMNS, (BOX[3] - BOX[1]) / ROWS
    lon0, lat0 = BOX[0] + col * dx, BOX[1] + row * dy
    return round(lon0, 6), round(lat0, 6), round(lon0 + dx, 6), round(lat0 + dy, 6)


def boundaries(level3: list[str]) -> dict[str, object]:
    features = []
    for k, g3 in enumerate(level3):
        x0, y0, x1, y1 = cell(k)
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        features.append(
            {
                "type": "Feature",
                "properties": {"grid": g3},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    return {"type": "FeatureCollection", "features": features}


def main(out: str) -> None:
    rng = random.Random(20240204)
    place = random.Random(4326)  # station positions: separate, so the ids above never move
    secrets = random.Random(212)  # HJ 212 passwords: separate again, so nothing above moves
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
    index = {g3: k for k, g3 in enumerate(level3)}
    for i, g3 in enumerate(chosen, start=1):
        x0, y0, x1, y1 = cell(index[g3])
        station: dict[str, object] = {
            "id": f"ST{i:03d}",
            "name": f"station {i}",
            # inside the cell, well clear of its edges
            "lon": round(x0 + (x1 - x0) * place.uniform(0.2, 0.8), 5),
            "lat": round(y0 + (y1 - y0) * place.uniform(0.2, 0.8), 5),
        }
        if i % 2:
            station["grid"] = g3
        station["mn"] = f"65010022A{i:015d}"  # 24 characters, as HJ 212-2017 has it
        station["pw"] = f"{secrets.randrange(10**6):06d}"
        stations.append(station)
    doc = {
        "schema_version": 1,
        "city": "Sample City (shaped like Urumqi, 2023)",
        "boundaries": BOUNDARIES,
        "grids": grids,
        "workers": workers,
        "stations": stations,
    }
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False, indent=0)
        fh.write("\n")
    geo = boundaries(level3)
    with (Path(out).parent / BOUNDARIES).open("w", encoding="utf-8") as fh:
        fh.write('{"type": "FeatureCollection", "features": [\n')
        fh.write(",\n".join(json.dumps(f, separators=(",", ":")) for f in geo["features"]))  # type: ignore[attr-defined]
        fh.write("\n]}\n")


if __name__ == "__main__":
    main(sys.argv[1])
