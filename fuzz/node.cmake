cn_fuzz_target(http_upgrade LIBS chatnode_transport)
cn_fuzz_target(ws_frame LIBS chatnode_transport)
cn_fuzz_target(jwt LIBS chatnode_core)
cn_fuzz_target(tls_feed LIBS chatnode_transport)
