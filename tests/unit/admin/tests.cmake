cn_unit_test(admin codec LIBS chatproto)
