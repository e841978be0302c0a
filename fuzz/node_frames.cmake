# ClientFrame decode (budgeted allocator) plus the node's field checks,
# mirrored from node/dispatch.c and node/handle_*.c. The seed corpus is made
# by fuzz/gen_clientframe_corpus.py.
cn_fuzz_target(clientframe LIBS chatproto chatcrypto)
