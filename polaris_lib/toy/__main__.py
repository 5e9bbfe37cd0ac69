"""Regenerate a shipped toy world: python -m polaris_lib.toy --ship [--preset tiny-hard]."""

import argparse

from polaris_lib.toy.build import SHIPPED_WORLDS, build_toy_world, ship_toy_world

parser = argparse.ArgumentParser(description="Build a preset's toy world")
parser.add_argument("--preset", default="tiny", choices=sorted(SHIPPED_WORLDS))
parser.add_argument("--ship", action="store_true", help="copy it into polaris_lib/assets/toy")
args = parser.parse_args()
cfg = SHIPPED_WORLDS[args.preset]
others = tuple(c for name, c in SHIPPED_WORLDS.items() if name != args.preset)
path = ship_toy_world(cfg, keep=others) if args.ship else build_toy_world(cfg, force=True)
print(path)
