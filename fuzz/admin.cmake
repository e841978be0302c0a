cn_fuzz_target(admin_codec LIBS chatproto)
