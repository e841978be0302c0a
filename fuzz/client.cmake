# libchatclient parsers: the message content decoder.
cn_fuzz_target(client_content LIBS chatclient_lib)
