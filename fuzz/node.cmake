cn_fuzz_target(http_upgrade LIBS chatnode_transport)
cn_fuzz_target(ws_frame LIBS chatnode_transport)
cn_fuzz_target(jwt LIBS chatnode_core)
