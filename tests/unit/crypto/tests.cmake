cn_unit_test(crypto identity LIBS chatcrypto)
target_compile_definitions(test_crypto_identity
                           PRIVATE CN_VECTORS_DIR="${CMAKE_SOURCE_DIR}/tests/vectors")
cn_unit_test(crypto transcript LIBS chatcrypto)
