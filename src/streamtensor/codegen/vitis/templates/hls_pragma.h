// HLS directives: a pragma for Vitis HLS, nothing for g++ (whose -Wall rejects unknown pragmas, and whose
// C++ front end ignores `#pragma GCC diagnostic` for them).
#ifdef __SYNTHESIS__
#define HLS_PRAGMA_TEXT(text) #text
#define HLS_PRAGMA(directive) _Pragma(HLS_PRAGMA_TEXT(HLS directive))
#else
#define HLS_PRAGMA(directive)
#endif
