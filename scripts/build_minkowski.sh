#!/usr/bin/env bash
# Placeholder replaced by the MinkowskiEngine build (issue 3); does nothing yet.
echo "MinkowskiEngine build: not yet implemented"
