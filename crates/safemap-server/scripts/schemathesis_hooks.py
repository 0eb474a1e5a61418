"""Hooks of api-fuzz.sh (loaded through SCHEMATHESIS_HOOKS).

OpenAPI cannot say "exactly one of two headers": a reason comes in X-Reason
or in X-Reason-Encoded (http-api.md, "Reasons"), and both together are 400
invalid_header. The document marks X-Reason required (what a generated client
sends) and X-Reason-Encoded optional, so the fuzzer would pair them and count
the server's refusal as a valid request rejected. The fuzzer therefore never
sends X-Reason-Encoded; tests/reasons.rs and the console's browser test cover
it (decoding, both headers, bad encodings, the limit in decoded characters).
"""

import schemathesis

ENCODED = "x-reason-encoded"


@schemathesis.hook
def map_headers(ctx, headers):
    if headers:
        for name in [n for n in headers if n.lower() == ENCODED]:
            del headers[name]
    return headers
