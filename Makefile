# Conveniences; the README's two commands (scripts/dev, scripts/test) are the set-up.
.PHONY: bench

# Every benchmark; rewrites docs/benchmarks.md.
bench:
	./scripts/bench
