//! The MMP command language: text to Command, apply, result text; shared by every front end
