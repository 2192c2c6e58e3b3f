"""Generated gRPC stubs for the rnnlm.v1 API (``rnnlm.proto``).

Do not edit the ``*_pb2*`` files by hand: ``python scripts/gen_proto.py`` regenerates them.
"""
