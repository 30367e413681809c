# python/cmake/embed_py.cmake — write a Python source file into a C header as
# a NUL-terminated char array (cmake -DIN=file.py -DOUT=x.h -DNAME=sym -P ...),
# so libloom_python.so carries loom/_wire.py and needs no package on sys.path.
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n" body "${body}")
file(WRITE ${OUT}.tmp "/* generated from ${IN} by python/cmake/embed_py.cmake */\n"
  "static const char ${NAME}[] = {\n${body}0x00};\n")
file(RENAME ${OUT}.tmp ${OUT})
