#version 330
// MMD-like shading: (material ambient + diffuse * light) * texture, sphere map
// (multiply / add), toon ramp looked up by N.L, Blinn-Phong specular.
uniform sampler2D u_texture;
uniform sampler2D u_sphere;
uniform sampler2D u_toon;
uniform bool u_has_texture;
uniform int u_sphere_mode;     // 0 none, 1 multiply, 2 add (3 = sub-texture: treated as none)
uniform vec4 u_diffuse;
uniform vec3 u_mat_ambient;
uniform vec3 u_specular;
uniform float u_specular_power;
uniform vec4 u_tex_tint;
uniform vec4 u_sphere_tint;
uniform vec4 u_toon_tint;
uniform vec3 u_light_dir;      // direction the light travels (model space)
uniform vec3 u_light_color;
uniform float u_alpha_cutoff;
in vec3 v_normal;
in vec2 v_uv;
out vec4 f_color;
void main() {
    vec3 n = normalize(v_normal);
    if (!gl_FrontFacing) n = -n;
    vec3 to_light = -normalize(u_light_dir);
    vec3 to_eye = vec3(0.0, 0.0, -1.0);
    vec4 base = vec4(clamp(u_mat_ambient + u_diffuse.rgb * u_light_color, 0.0, 1.0), u_diffuse.a);
    if (u_has_texture) base *= texture(u_texture, v_uv) * u_tex_tint;
    if (base.a < u_alpha_cutoff) discard;
    if (u_sphere_mode == 1 || u_sphere_mode == 2) {
        // view-space normal: x right, y up; sphere textures have v = 0 at the top
        vec2 suv = vec2(n.x * 0.5 + 0.5, 0.5 - n.y * 0.5);
        vec3 s = texture(u_sphere, suv).rgb * u_sphere_tint.rgb;
        base.rgb = (u_sphere_mode == 1) ? base.rgb * s : base.rgb + s;
    }
    float ndl = dot(n, to_light);
    vec3 toon = texture(u_toon, vec2(0.5, clamp(0.5 - ndl * 0.5, 0.0, 1.0))).rgb * u_toon_tint.rgb;
    base.rgb *= toon;
    if (u_specular_power > 0.0) {
        vec3 h = normalize(to_light + to_eye);
        base.rgb += u_specular * u_light_color * pow(max(dot(n, h), 0.0), u_specular_power);
    }
    f_color = vec4(clamp(base.rgb, 0.0, 1.0), clamp(base.a, 0.0, 1.0));
}
