# Copies one of etcd's .proto files (IN) to OUT without the gogoproto and
# google.api annotations, which only etcd's Go build and its JSON gateway
# use; the messages and services are left exactly as etcd defines them.
# Run as: cmake -DIN=... -DOUT=... -P StripEtcdProto.cmake
file(READ "${IN}" text)
string(REGEX REPLACE "import \"gogoproto/gogo.proto\";" "" text "${text}")
string(REGEX REPLACE "import \"google/api/annotations.proto\";" "" text
       "${text}")
string(REGEX REPLACE "option \\(gogoproto\\.[a-z_]+\\) = [a-z]+;" "" text
       "${text}")
# An http option may hold one level of additional_bindings { ... }.
string(REGEX REPLACE "additional_bindings {[^}]*}" "" text "${text}")
string(REGEX REPLACE "option \\(google\\.api\\.http\\) = {[^}]*};" "" text
       "${text}")
string(REGEX REPLACE "\\[\\(gogoproto\\.[^]]*\\]" "" text "${text}")
if(text MATCHES "gogoproto|google\\.api")
  message(FATAL_ERROR "${IN}: an annotation this script does not strip")
endif()
file(WRITE "${OUT}" "${text}")
