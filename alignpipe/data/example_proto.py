"""`tf.train.Example` without TensorFlow: a wire-compatible copy of TensorFlow's
`example.proto` / `feature.proto`, built in a private descriptor pool.

The field numbers and types are TensorFlow's, so the bytes these messages serialise
to parse as `tf.train.Example` and back.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "alignpipe.tfexample"
_F = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, kind: int, label: int = _F.LABEL_OPTIONAL, **kw) -> _F:
    return _F(name=name, number=number, type=kind, label=label, **kw)


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(
        name="alignpipe/tfexample.proto", package=_PACKAGE, syntax="proto3"
    )
    rep = _F.LABEL_REPEATED
    f.message_type.add(name="BytesList").field.append(_field("value", 1, _F.TYPE_BYTES, rep))
    f.message_type.add(name="FloatList").field.append(_field("value", 1, _F.TYPE_FLOAT, rep))
    f.message_type.add(name="Int64List").field.append(_field("value", 1, _F.TYPE_INT64, rep))
    feature = f.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in enumerate(("bytes_list", "float_list", "int64_list"), start=1):
        type_name = f".{_PACKAGE}.{name.title().replace('_', '')}"
        feature.field.append(_field(name, number, _F.TYPE_MESSAGE, type_name=type_name, oneof_index=0))
    features = f.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.append(_field("key", 1, _F.TYPE_STRING))
    entry.field.append(_field("value", 2, _F.TYPE_MESSAGE, type_name=f".{_PACKAGE}.Feature"))
    features.field.append(
        _field("feature", 1, _F.TYPE_MESSAGE, rep, type_name=f".{_PACKAGE}.Features.FeatureEntry")
    )
    example = f.message_type.add(name="Example")
    example.field.append(_field("features", 1, _F.TYPE_MESSAGE, type_name=f".{_PACKAGE}.Features"))
    return f


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
Example = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.Example"))
