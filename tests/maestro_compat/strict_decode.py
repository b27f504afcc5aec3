"""Strict protojson decode of recorded answers against Maestro's messages.

Usage: strict_decode.py CASES.json PROTO_DIR [PROTO_DIR...]

CASES.json is a list of {"case", "message", "body"}; each body is parsed with
google.protobuf.json_format.Parse into the named message (e.g. "api.v1.GetSchedulerResponse"),
unknown fields rejected, as a client generated from Maestro's protos decodes it. The protos
are compiled with grpc_tools.protoc at start. Prints one line per case; exits 1 if any fails.
"""

import importlib
import json
import os
import sys
import tempfile

from grpc_tools import protoc
from google.protobuf import json_format, symbol_database


def compile_protos(out_dir, proto_dirs):
    # grpc_tools ships the well-known types (timestamp, struct, any, duration).
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    files = []
    for d in proto_dirs:
        files += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".proto")]
    args = ["protoc", f"--python_out={out_dir}", f"-I{well_known}"]
    args += [f"-I{d}" for d in proto_dirs] + files
    if protoc.main(args) != 0:
        sys.exit(f"protoc failed on {files}")
    sys.path.insert(0, out_dir)
    for f in files:
        importlib.import_module(os.path.basename(f)[: -len(".proto")] + "_pb2")


def main():
    cases_file, proto_dirs = sys.argv[1], sys.argv[2:]
    with tempfile.TemporaryDirectory() as out:
        compile_protos(out, proto_dirs)
        db = symbol_database.Default()
        with open(cases_file) as f:
            cases = json.load(f)
        failed = 0
        for case in cases:
            cls = db.GetSymbol(case["message"])
            try:
                json_format.Parse(json.dumps(case["body"]), cls(), ignore_unknown_fields=False)
                print(f"ok   {case['case']} ({case['message']})")
            except json_format.ParseError as e:
                failed += 1
                print(f"FAIL {case['case']} ({case['message']}): {e}")
        print(f"{len(cases) - failed} of {len(cases)} answers decode strictly")
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
