"""`flink run -pym rnnedge.fleet.submit -- BUNDLE --input ... --output ...`: `rnnedge fleet` on a Flink cluster."""

import sys

from rnnedge.cli import main

if __name__ == "__main__":
    sys.argv[1:1] = ["fleet"]
    sys.argv.append("--cluster")
    main()
