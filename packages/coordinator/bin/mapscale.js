#!/usr/bin/env node
// A committed shim, so the bin link exists before the first build.
import '../dist/cli.js';
