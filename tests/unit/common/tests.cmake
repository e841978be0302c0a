cn_unit_test(common buf LIBS chatcommon)
