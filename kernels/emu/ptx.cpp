// PTX header and entry-point parsing (see ptx.h).
#include "ptx.h"

#include <ctype.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>

namespace jg_emu {

namespace {

// Strip // and /* */ comments so that commented-out declarations are not read.
std::string strip_comments(const char* s) {
    std::string out;
    for (size_t i = 0; s[i];) {
        if (s[i] == '/' && s[i + 1] == '/') {
            while (s[i] && s[i] != '\n') ++i;
        } else if (s[i] == '/' && s[i + 1] == '*') {
            i += 2;
            while (s[i] && !(s[i] == '*' && s[i + 1] == '/')) ++i;
            if (s[i]) i += 2;
        } else {
            out += s[i++];
        }
    }
    return out;
}

std::vector<std::string> tokens(const std::string& s) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && isspace((unsigned char)s[i])) ++i;
        size_t j = i;
        while (j < s.size() && !isspace((unsigned char)s[j])) ++j;
        if (j > i) out.push_back(s.substr(i, j - i));
        i = j;
    }
    return out;
}

size_t type_bytes(const std::string& t) {
    static const char* one[] = {".u8", ".s8", ".b8", ".pred"};
    static const char* two[] = {".u16", ".s16", ".b16", ".f16", ".bf16"};
    static const char* four[] = {".u32", ".s32", ".b32", ".f32", ".f16x2"};
    static const char* eight[] = {".u64", ".s64", ".b64", ".f64"};
    for (const char* x : one)
        if (t == x) return 1;
    for (const char* x : two)
        if (t == x) return 2;
    for (const char* x : four)
        if (t == x) return 4;
    for (const char* x : eight)
        if (t == x) return 8;
    return 0;
}

// ".param .align 4 .b8 name[132]", ".param .u64 name" or ".param .u64 .ptr .global .align 8 name"
bool parse_param(const std::string& decl, PtxParam* p, std::string* error) {
    std::vector<std::string> t = tokens(decl);
    p->text = decl;
    if (t.empty() || t[0] != ".param") {
        *error = "unexpected parameter declaration '" + decl + "'";
        return false;
    }
    size_t elem = 0, explicit_align = 0, count = 1;
    bool pointer = false;  // after .ptr, `.align N` is the pointee's alignment, not the parameter's
    for (size_t i = 1; i < t.size(); ++i) {
        if (t[i] == ".align" && i + 1 < t.size()) {
            size_t a = strtoull(t[++i].c_str(), nullptr, 10);
            if (!pointer) explicit_align = a;
        } else if (t[i] == ".ptr") {
            pointer = true;
        } else if (t[i] == ".global" || t[i] == ".shared" || t[i] == ".const" || t[i] == ".local") {
            // the pointee's state space: no change to the layout
        } else if (t[i][0] == '.') {
            size_t b = type_bytes(t[i]);
            if (b == 0) {
                *error = "unknown parameter type " + t[i] + " in '" + decl + "'";
                return false;
            }
            elem = b;
        } else {
            size_t lb = t[i].find('[');
            if (lb != std::string::npos) count = strtoull(t[i].c_str() + lb + 1, nullptr, 10);
        }
    }
    if (elem == 0 || count == 0) {
        *error = "cannot size parameter '" + decl + "'";
        return false;
    }
    p->size = elem * count;
    p->align = explicit_align ? explicit_align : elem;
    return true;
}

}  // namespace

bool parse_ptx(const char* text, PtxModule* out, std::string* error) {
    if (!text) {
        *error = "null image";
        return false;
    }
    if ((unsigned char)text[0] == 0x7f && strncmp(text + 1, "ELF", 3) == 0) {
        *error = "the image is an ELF cubin; this stand-in driver reports compute capability 10.0 so that jetgen "
                 "hands it PTX, and loads PTX only";
        return false;
    }
    std::string s = strip_comments(text);
    size_t v = s.find(".version");
    if (v == std::string::npos) {
        *error = "no .version directive: not PTX text";
        return false;
    }
    {
        std::vector<std::string> t = tokens(s.substr(v, 64));
        if (t.size() < 2 || sscanf(t[1].c_str(), "%d.%d", &out->version_major, &out->version_minor) != 2) {
            *error = "unreadable .version directive";
            return false;
        }
    }
    size_t tg = s.find(".target");
    if (tg == std::string::npos) {
        *error = "no .target directive";
        return false;
    }
    {
        std::vector<std::string> t = tokens(s.substr(tg, 64));
        out->target = t.size() >= 2 ? t[1] : "";
        while (!out->target.empty() && (out->target.back() == ',' || out->target.back() == ';')) out->target.pop_back();
    }
    size_t pos = 0;
    while ((pos = s.find(".entry", pos)) != std::string::npos) {
        pos += 6;
        if (pos < s.size() && !isspace((unsigned char)s[pos])) continue;  // e.g. ".entry_foo"
        size_t open = s.find('(', pos);
        size_t brace = s.find('{', pos);
        PtxEntry e;
        size_t name_end = std::min(open, brace);
        if (name_end == std::string::npos) {
            *error = "truncated .entry";
            return false;
        }
        std::vector<std::string> nt = tokens(s.substr(pos, name_end - pos));
        if (nt.empty()) {
            *error = ".entry without a name";
            return false;
        }
        e.name = nt[0];
        if (open != std::string::npos && open < brace) {
            size_t close = s.find(')', open);
            if (close == std::string::npos) {
                *error = "unterminated parameter list of " + e.name;
                return false;
            }
            std::string list = s.substr(open + 1, close - open - 1);
            size_t start = 0;
            while (start < list.size()) {
                size_t comma = list.find(',', start);
                std::string decl = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
                start = comma == std::string::npos ? list.size() : comma + 1;
                if (tokens(decl).empty()) continue;
                PtxParam p;
                if (!parse_param(decl, &p, error)) {
                    *error = e.name + ": " + *error;
                    return false;
                }
                e.params.push_back(p);
            }
            pos = close;
        }
        out->entries.push_back(e);
    }
    return true;
}

}  // namespace jg_emu
