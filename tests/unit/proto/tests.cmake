cn_unit_test(proto records LIBS chatproto)
