# libchatcrypto parsers: E2E wire messages (X3DH initial message, ratchet
# header and message) and persisted E2E state (session records, ratchet
# states, sender keys).
cn_fuzz_target(e2e_message LIBS chatcrypto)
cn_fuzz_target(e2e_state LIBS chatcrypto)
