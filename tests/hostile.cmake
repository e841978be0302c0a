# Hostile input and crashes (issue 6): WebSocket conformance and the TLS
# profile (label conformance), abuse with resource bounds (label abuse),
# crash safety (label crash). Every one of them starts real chatnode
# processes on 127.0.0.1 and leaves none behind. Included from
# tests/CMakeLists.txt after integration/tests.cmake (cn_integ_harness).

# RFC 6455 conformance against `chatnode --test-echo` (Python stdlib only).
add_test(NAME conformance_websocket
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/conformance/test_ws_conformance.py
                 $<TARGET_FILE:chatnode>)
set_tests_properties(conformance_websocket PROPERTIES LABELS conformance TIMEOUT 300)

# TLS profile with testssl (about 30 s, offline, loopback only).
add_test(NAME conformance_tls_profile
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/conformance/test_tls_profile.py
                 $<TARGET_FILE:chatnode>)
set_tests_properties(conformance_tls_profile PROPERTIES LABELS "conformance;tls" TIMEOUT 600)

# Abuse: hostile raw clients (Python) and authenticated ones (C harness).
add_test(NAME abuse_raw
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/abuse/test_abuse.py
                 $<TARGET_FILE:chatnode> $<TARGET_FILE:chatclient>)
set_tests_properties(abuse_raw PROPERTIES LABELS abuse TIMEOUT 600 RUN_SERIAL TRUE)

add_executable(test_abuse_auth abuse/test_abuse_auth.c)
target_link_libraries(test_abuse_auth PRIVATE cn_integ_harness)
cn_warnings(test_abuse_auth)
add_test(NAME abuse_auth COMMAND test_abuse_auth)
set_tests_properties(abuse_auth PROPERTIES LABELS abuse TIMEOUT 300
                     ENVIRONMENT "CHATNODE_BIN=$<TARGET_FILE:chatnode>")

# Crash safety: SIGKILL under load, disk full, fsync failure (libfiu).
add_test(NAME crash_sigkill_loop
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/crash/test_sigkill_loop.py
                 $<TARGET_FILE:chatnode> $<TARGET_FILE:chatclient> 50)
set_tests_properties(crash_sigkill_loop PROPERTIES LABELS crash TIMEOUT 900)

# Disk full (tmpfs; needs root) and fsync failure (libfiu): C harness.
add_executable(test_crash_faults crash/test_crash_faults.c)
target_link_libraries(test_crash_faults PRIVATE cn_integ_harness)
cn_warnings(test_crash_faults)
add_test(NAME crash_storage_faults COMMAND test_crash_faults)
set_tests_properties(crash_storage_faults PROPERTIES LABELS crash TIMEOUT 300 RUN_SERIAL TRUE
                     ENVIRONMENT "CHATNODE_BIN=$<TARGET_FILE:chatnode>")


