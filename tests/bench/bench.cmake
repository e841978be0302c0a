# chatbench, the load generator of docs/PERFORMANCE.md (`make bench`).
# Included from tests/CMakeLists.txt; paths are relative to this file so it
# works from any including directory.
set(CN_BENCH_DIR ${CMAKE_CURRENT_LIST_DIR})
add_executable(chatbench
    ${CN_BENCH_DIR}/main.c ${CN_BENCH_DIR}/hist.c ${CN_BENCH_DIR}/loop.c ${CN_BENCH_DIR}/conn.c
    ${CN_BENCH_DIR}/wire.c ${CN_BENCH_DIR}/users.c ${CN_BENCH_DIR}/relay.c
    ${CN_BENCH_DIR}/misc.c ${CN_BENCH_DIR}/mqtt.c)
target_link_libraries(chatbench PRIVATE chatcrypto chatproto chatcommon PkgConfig::UV OpenSSL::SSL
                      OpenSSL::Crypto)
cn_warnings(chatbench)

# storebench: the store's CPU per relayed message, without network (docs/PERFORMANCE.md).
add_executable(storebench ${CN_BENCH_DIR}/storebench.c)
target_link_libraries(storebench PRIVATE chatstore)
cn_warnings(storebench)

# writefloor: the cost of one small loopback write per socket (the fan-out's floor).
add_executable(writefloor ${CN_BENCH_DIR}/writefloor.c)
cn_warnings(writefloor)

# relayfloor: the system calls of a one-to-one relay alone (the relay rows' floor).
add_executable(relayfloor ${CN_BENCH_DIR}/relayfloor.c)
cn_warnings(relayfloor)
# A short run must deliver every message; a bad option is refused.
add_test(NAME bench_relayfloor_smoke
         COMMAND relayfloor --pairs 4 --rate 2000 --duration 2 --gen-cpu 0)
set_tests_properties(bench_relayfloor_smoke PROPERTIES LABELS unit TIMEOUT 60
                     PASS_REGULAR_EXPRESSION "\"all_delivered\":true.*\"p99_us\":[0-9]+")
add_test(NAME bench_relayfloor_usage COMMAND relayfloor --rate 0)
set_tests_properties(bench_relayfloor_usage PROPERTIES LABELS unit WILL_FAIL TRUE)

# report.py, which rewrites the results table of docs/PERFORMANCE.md.
add_test(NAME unit_bench_report
         COMMAND /usr/bin/python3 ${CN_BENCH_DIR}/test_report.py)
set_tests_properties(unit_bench_report PROPERTIES LABELS unit TIMEOUT 60)

# chatbench's measuring helpers (the span delivered_per_s is counted over, payloads, histograms).
cn_unit_test(bench hist SOURCES ${CN_BENCH_DIR}/hist.c LIBS chatcommon)
