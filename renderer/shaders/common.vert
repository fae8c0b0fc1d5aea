#version 330
// Orthographic front camera shared by every shading mode.
// MMD coordinates: +x = image right, +y = image up, the character faces -z,
// so larger z is farther from the viewer (GL's default depth order).
uniform vec4 u_frame;     // centre x, centre y, 1/half, unused
uniform vec2 u_depth;     // centre z, 1/half depth range
in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
out vec3 v_normal;
out vec2 v_uv;
void main() {
    gl_Position = vec4((in_position.xy - u_frame.xy) * u_frame.z,
                       (in_position.z - u_depth.x) * u_depth.y, 1.0);
    v_normal = in_normal;
    v_uv = in_uv;
}
