cn_fuzz_target(records LIBS chatproto)
