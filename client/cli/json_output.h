// JSON output of linserve-cli's --json modes: protobuf messages in the
// canonical JSON mapping with the .proto field names (snake_case) and every
// field printed, so scripts see zeros and empty values too.
#ifndef LINSERVE_CLIENT_CLI_JSON_OUTPUT_H_
#define LINSERVE_CLIENT_CLI_JSON_OUTPUT_H_

#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

#include <string>

namespace linserve::cli {

inline std::string MessageToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  // Printing a valid message cannot fail; an error would show as "{}".
  if (!google::protobuf::util::MessageToJsonString(message, &json, options)
           .ok()) {
    return "{}";
  }
  return json;
}

// `text` as a JSON string literal.
inline std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (const unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          static const char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

}  // namespace linserve::cli

#endif  // LINSERVE_CLIENT_CLI_JSON_OUTPUT_H_
