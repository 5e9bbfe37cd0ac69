"""Regenerate the shipped toy world: python -m polaris_lib.toy --ship."""

import argparse

from polaris_lib.config.sections import ToyConfig
from polaris_lib.toy.build import build_toy_world, ship_toy_world

parser = argparse.ArgumentParser(description="Build the default toy world")
parser.add_argument("--ship", action="store_true", help="copy it into polaris_lib/assets/toy")
args = parser.parse_args()
path = ship_toy_world(ToyConfig()) if args.ship else build_toy_world(ToyConfig(), force=True)
print(path)
