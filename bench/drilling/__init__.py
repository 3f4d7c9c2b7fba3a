"""Parts of bench/drills.py (a package, so `make bench` does not run them as benches)."""
